"""Cross-validation across conditions: folds from recording metadata, and a tiny real run of `edgecnn cv`."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from edgecnn.cv import make_folds, parse_seeds
from edgecnn.dataset import load_windows
from edgecnn.errors import ConfigError, InputError
from tests.util import SHARED_DATA, run_cli

CWRU = SHARED_DATA / "cwru"
MFPT = SHARED_DATA / "mfpt"
needs_data = pytest.mark.skipif(not (CWRU.is_dir() and MFPT.is_dir()), reason="shared real data not present")


def assert_each_recording_tested_once(data, folds):
    tested = [data.recordings[g]["id"] for f in folds for g in np.unique(data.groups[f.test_idx])]
    assert sorted(tested) == sorted(r["id"] for r in data.recordings)  # once each, none twice
    for f in folds:
        assert not set(data.groups[f.train_idx]) & set(data.groups[f.test_idx])
        assert f.train_idx.size + f.test_idx.size == len(data)
        assert set(np.unique(data.labels[f.train_idx])) == set(range(len(data.classes)))


@needs_data
@pytest.mark.parametrize("by, label_map, n_folds", [
    ("load_hp", "inner_race=A,outer_race=B", 2),
    ("fault_diameter_in", "inner_race=A,outer_race=B", 2),
    ("recording", "inner_race=A,outer_race=B", 8),
])
def test_cwru_folds_hold_every_recording_out_exactly_once(by, label_map, n_folds):
    data = load_windows(CWRU, label_map=label_map)
    folds, notes = make_folds(data, by)
    assert len(folds) == n_folds and not notes
    assert_each_recording_tested_once(data, folds)
    if by == "load_hp":
        assert [f.name for f in folds] == ["load_hp=0", "load_hp=1"]
        assert all({data.recordings[g]["load_hp"] for g in np.unique(data.groups[f.test_idx])} == {int(f.value)}
                   for f in folds)


@needs_data
def test_the_one_normal_recording_is_spread_over_the_load_folds():
    # Every normal window is from one 0 hp recording: leaving 0 hp out would train without class A.
    data = load_windows(CWRU, label_map="normal=A,*=B")
    folds, notes = make_folds(data, "load_hp")
    assert len(notes) == 1 and "segment i is tested in fold i mod 2" in notes[0]
    assert_each_recording_tested_once(data, folds)
    for f in folds:
        assert np.any(data.labels[f.test_idx] == 0)


@needs_data
def test_mfpt_leave_one_load_out_and_unknown_keys():
    data = load_windows(MFPT, label_map="inner_race=A,outer_race=B")
    folds, _ = make_folds(data, "load_lb")
    assert [f.name for f in folds] == [f"load_lb={float(v)}" for v in (0, 25, 50, 100, 150, 200)]
    assert_each_recording_tested_once(data, folds)
    with pytest.raises(InputError, match="no 'load_hp' metadata; keys every recording has: .*load_lb"):
        make_folds(data, "load_hp")


@needs_data
def test_group_k_fold_leaves_loads_out_k_at_a_time():
    data = load_windows(MFPT, label_map="inner_race=A,outer_race=B")
    folds, _ = make_folds(data, "load_lb", 3)
    assert len(folds) == 3
    left_out = sorted(v for f in folds for v in f.value.split(","))
    assert left_out == sorted(str(float(v)) for v in (0, 25, 50, 100, 150, 200))
    assert_each_recording_tested_once(data, folds)
    with pytest.raises(ConfigError, match=r"--folds 7 must be in \[2, 6\]"):
        make_folds(data, "load_lb", 7)


def test_seeds_parse_or_fail_in_one_line():
    assert parse_seeds("0,1, 2") == (0, 1, 2)
    for bad in ("", "a", "1,1"):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


@needs_data
def test_cli_bad_key_is_one_line_exit_2(tmp_path):
    proc = run_cli("cv", "--data", str(CWRU), "--by", "machine", "--quiet", "--out", str(tmp_path / "cv"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "no 'machine' metadata" in proc.stderr


@pytest.mark.slow
def test_tiny_real_cv_run_writes_the_tables_heat_map_and_report_section(tmp_path):
    from edgecnn import synth

    data = synth.generate(n=64, seed=3, n_recordings=4, difficulty=0.3)
    path = tmp_path / "synth.pkl"
    path.write_bytes(pickle.dumps(data))
    out = tmp_path / "cv"
    proc = run_cli("cv", "--data", str(path), "--by", "recording", "--seeds", "0", "--epochs", "2", "--no-cache",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("cv: seed 0 fold")]
    assert len(progress) == 4 and all("float" in line and "int8" in line for line in progress)
    assert "cross-validated (4 folds by recording, 1 seed(s))" in proc.stdout
    doc = json.loads((out / "cv.json").read_text())
    assert doc["format"] == "edgecnn-cv" and len(doc["folds"]) == 4
    tested = [r["recording"] for r in doc["recordings"]]
    assert sorted(tested) == sorted(set(tested)) and len(tested) == 4
    for row in doc["recordings"]:
        assert len(row["float"]) == 1 and 0.0 <= row["int8"][0] <= 1.0
    pooled = sum(r["float"][0] * r["n"] for r in doc["recordings"]) / sum(r["n"] for r in doc["recordings"])
    assert abs(pooled - doc["summary"]["float"]["mean"]) < 1e-9
    md = (out / "cv.md").read_text()
    assert "## Per fold" in md and "## Per recording" in md and all(t in md for t in tested)
    assert (out / "cv.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a second run into the same folder is refused without --force
    again = run_cli("cv", "--data", str(path), "--by", "recording", "--out", str(out))
    assert again.returncode == 2 and "--force" in again.stderr
    report = run_cli("report", str(out), "--out", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "report.html").read_text()
    assert 'id="cv-recordings"' in html and all(t in html for t in tested)


@pytest.mark.slow
def test_test_fraction_0_trains_on_everything_and_reports_a_cross_validated_estimate(tmp_path):
    from edgecnn import synth

    path = tmp_path / "synth.pkl"
    path.write_bytes(pickle.dumps(synth.generate(n=64, seed=3, n_recordings=4, difficulty=0.3)))
    run = tmp_path / "run"
    proc = run_cli("train", "--data", str(path), "--test-fraction", "0", "--epochs", "2", "--no-cache",
                   "--out", str(run))
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    split = json.loads((run / "split.json").read_text())
    assert metrics["test"] is None and split["test"] == []
    assert len(set(split["train"]) | set(split["validation"])) == 4  # every recording trains the final model
    estimate = metrics["estimate"]
    # synthetic recordings name their machine: the estimate leaves one machine out (else one recording)
    assert estimate["available"] and estimate["by"] == "machine"
    assert f"trained on every recording, no test set; cross-validated ({estimate['folds']} folds by machine, " \
           "1 seed(s))" in proc.stdout
    doc = json.loads((run / "cv" / "cv.json").read_text())
    assert estimate["float_accuracy"] == doc["summary"]["float"]["mean"]
    assert len(doc["recordings"]) == 4 and len(doc["folds"]) == estimate["folds"] >= 2
    assert (run / "cv" / "cv.png").is_file()
    report = run_cli("report", str(run), "--out", str(tmp_path / "report.html"))
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "report.html").read_text()
    assert "No test set: the model was trained on every recording" in html and 'id="cv-folds"' in html

    bare = run_cli("train", "--data", str(path), "--test-fraction", "0", "--no-cv", "--epochs", "2", "--no-cache",
                   "--out", str(tmp_path / "bare"))
    assert bare.returncode == 0, bare.stderr
    assert "no held-out estimate exists" in bare.stdout
    assert json.loads((tmp_path / "bare" / "metrics.json").read_text())["estimate"]["available"] is False
    assert not (tmp_path / "bare" / "cv").exists()

    wrong = run_cli("train", "--data", str(path), "--cv-by", "recording", "--out", str(tmp_path / "x"))
    assert wrong.returncode == 2 and "--test-fraction 0" in wrong.stderr
