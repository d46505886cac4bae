"""The decision policy chosen at export from validation probabilities, carried by the manifest,
shown by inspect and used (and overridable) by stream."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgecnn.config import SpectrogramConfig
from export.decision_policy import DELAY_BUDGET_S, choose_policy
from firmware_sim.decisions import DecisionPolicy
from tests.util import run_cli, write_resealed

CFG = SpectrogramConfig()


def _validation(recordings, seed=0):
    """Validation windows of recordings given as (class, n windows, share of windows the model gets wrong)."""
    rng = np.random.default_rng(seed)
    probs, labels, groups = [], [], []
    for g, (cls, n, wrong) in enumerate(recordings):
        p_true = np.where(rng.random(n) < wrong, rng.uniform(0.05, 0.4, n), rng.uniform(0.85, 1.0, n))
        p = np.zeros((n, 2), np.float32)
        p[:, cls], p[:, 1 - cls] = p_true, 1 - p_true
        probs.append(p)
        labels.append(np.full(n, cls))
        groups.append(np.full(n, g))
    return {"probabilities": np.concatenate(probs), "labels": np.concatenate(labels),
            "groups": np.concatenate(groups), "recording_ids": np.array([f"r{g}" for g in range(len(recordings))]),
            "window_step": np.asarray(CFG.window_samples)}


def test_the_chosen_policy_has_no_false_alarm_and_meets_the_delay_budget():
    validation = _validation([(0, 30, 0.03), (1, 30, 0.0), (0, 30, 0.05), (1, 30, 0.03), (0, 30, 0.0)])
    section = choose_policy(validation, CFG, ["healthy", "outer"])
    chosen = section["chosen_by"]
    assert chosen["meets_budget"] and chosen["false_alarms"] == 0 and chosen["missed"] == 0
    assert chosen["worst_delay_s"] <= DELAY_BUDGET_S and chosen["onset_streams"] == 5
    assert chosen["steady_streams"] == 5 and chosen["decisions_per_window"] == 3
    policy = DecisionPolicy.from_dict(section)
    # The most evidence within the budget: every candidate asking for more votes was slower or alarmed.
    assert policy.agree >= 4
    # Swapping which class is which (no class is assumed healthy) gives the same policy.
    swapped = {**validation, "labels": 1 - validation["labels"], "probabilities": validation["probabilities"][:, ::-1]}
    assert DecisionPolicy.from_dict(choose_policy(swapped, CFG, ["outer", "healthy"])) == policy


def test_a_noisy_model_gets_more_evidence_or_says_the_budget_is_not_met():
    clean = choose_policy(_validation([(0, 40, 0.0), (1, 40, 0.0)] * 2), CFG, ["A", "B"])
    noisy = choose_policy(_validation([(0, 40, 0.3), (1, 40, 0.3)] * 2, seed=1), CFG, ["A", "B"])
    assert clean["chosen_by"]["meets_budget"]
    if noisy["chosen_by"]["meets_budget"]:
        assert noisy["chosen_by"]["false_alarms"] == 0
    else:  # the budget is stated as missed, with the figures of the best candidate
        assert noisy["chosen_by"]["false_alarms"] >= 0 and noisy["chosen_by"]["candidates_meeting_budget"] == 0


def test_no_validation_data_gives_the_built_in_default():
    section = choose_policy(None, CFG, ["A", "B"])
    assert DecisionPolicy.from_dict(section) == DecisionPolicy()
    assert section["chosen_by"]["method"] == "built-in default"


def test_export_writes_the_policy_inspect_shows_it_stream_uses_and_overrides_it(tiny_run_dir, tmp_path):
    from export.bundle import load_bundle
    from export.integrity import bundle_digest
    from export.writer import export_bundle

    run = tmp_path / "run"
    shutil.copytree(tiny_run_dir, run)
    np.savez(run / "validation.npz", **_validation([(0, 30, 0.03), (1, 30, 0.0), (0, 30, 0.05), (1, 30, 0.03)]))
    bundle_dir = export_bundle(run, tmp_path / "bundle", quiet=True)
    bundle = load_bundle(bundle_dir)
    section = bundle.manifest["decision_policy"]
    assert bundle.decision_policy == DecisionPolicy.from_dict(section)
    assert section["chosen_by"]["meets_budget"] is True
    # The section is covered by the digest: editing it (and resealing nothing) is refused.
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    assert manifest["bundle_digest"] == bundle_digest(manifest)
    manifest["decision_policy"]["threshold"] = 0.51
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))
    refused = run_cli("inspect", str(bundle_dir))
    assert refused.returncode == 2 and "digest" in refused.stderr
    manifest["decision_policy"]["threshold"] = section["threshold"]
    (bundle_dir / "manifest.json").write_text(json.dumps(manifest))

    shown = run_cli("inspect", str(bundle_dir))
    assert shown.returncode == 0, shown.stderr
    assert f"a state needs {section['agree']} of the last {section['smooth']} decisions" in shown.stdout
    assert "false alarms 0 (budget 0)" in shown.stdout

    out = tmp_path / "s.json"
    proc = run_cli("stream", str(bundle_dir), "--source", "synth:duration=2", "--quiet", "--json", str(out),
                   "--threshold", "0.9")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["policy"] == {**DecisionPolicy.from_dict(section).to_dict(), "threshold": 0.9}
    assert data["policy_from"] == "bundle, changed by --threshold"


def test_a_bad_policy_section_is_refused(tiny_bundle, tmp_path):
    from edgecnn.errors import BundleError
    from export.bundle import load_bundle

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["decision_policy"] = {**DecisionPolicy().to_dict(), "agree": 2}
    write_resealed(copy, manifest)
    with pytest.raises(BundleError, match="agree=2 must be more than half of smooth=8"):
        load_bundle(copy, verify_hashes=False)
