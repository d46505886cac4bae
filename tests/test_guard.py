"""The degenerate-model guard: its checks on predictions, and on real trainings (shuffled labels, easy data)."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from edgecnn import guard
from tests.util import run_cli

CLASSES = ["A", "B"]


def test_one_class_predicted_for_most_of_a_balanced_set_is_flagged():
    truth = np.array([0] * 50 + [1] * 50)
    constant = np.ones(100, dtype=int)
    reasons = guard.check_predictions("test", truth, constant, CLASSES)
    assert any("100% of 100 windows predicted 'B'" in r for r in reasons)
    assert any("balanced accuracy 50.0%" in r for r in reasons)
    # 89 of 100 windows called B is below the 90 % rule, but only 61 % right: not flagged.
    mostly = np.array([0] * 11 + [1] * 89)
    assert guard.check_predictions("test", truth, mostly, CLASSES) == []


def test_near_chance_is_flagged_and_a_good_model_is_not():
    truth = np.array([0, 1] * 50)
    near_chance = np.where(np.arange(100) < 54, truth, 1 - truth)  # 54 % right, both classes predicted
    assert any("balanced accuracy 54.0%" in r for r in guard.check_predictions("test", truth, near_chance, CLASSES))
    good = np.where(np.arange(100) < 95, truth, 1 - truth)
    assert guard.check_predictions("test", truth, good, CLASSES) == []


def test_sets_of_one_class_or_heavily_unbalanced_are_not_judged():
    # A leave-one-load-out fold holding one fault type: predicting that class everywhere is right.
    assert guard.check_predictions("fold", np.zeros(40, int), np.zeros(40, int), CLASSES) == []
    # 95 % of the windows are class B: predicting B for all of them is not evidence of a broken model.
    truth = np.array([0] * 5 + [1] * 95)
    assert guard.check_predictions("test", truth, np.ones(100, int), CLASSES) == []


def test_the_likely_cause_follows_the_training_history():
    truth = np.array([0] * 20 + [1] * 20)
    sets = {"validation": (truth, np.ones(40, int))}
    verdict = guard.assess(sets, CLASSES, history={"accuracy": [0.5, 0.9], "val_accuracy": [0.5, 0.5]},
                           best_epoch=1, validation_recordings={"A": 1, "B": 1}, validation_rule="by recording")
    assert verdict.degenerate and "near-chance epoch was restored (epoch 1" in verdict.cause
    assert "too small to choose an epoch" in verdict.cause
    unlearnt = guard.assess(sets, CLASSES, history={"accuracy": [0.5, 0.51], "val_accuracy": [0.5, 0.5]},
                            best_epoch=2, validation_recordings={"A": 4, "B": 4})
    assert "did not learn even its training windows" in unlearnt.cause
    held_out = guard.assess({"validation": (truth, truth), "test": (truth, np.zeros(40, int))}, CLASSES,
                            history={"accuracy": [0.99], "val_accuracy": [1.0]}, best_epoch=1,
                            validation_recordings={"A": 4, "B": 4})
    assert "not separable by these features across these recordings" in held_out.cause
    assert held_out.warning().startswith("warning: degenerate model: test: 100% of 40 windows predicted 'A'")


@pytest.fixture
def deterministic():
    import keras
    import tensorflow as tf
    from tensorflow.python.framework.config import disable_op_determinism

    keras.utils.set_random_seed(0)
    tf.config.experimental.enable_op_determinism()
    yield
    disable_op_determinism()


@pytest.mark.slow
def test_the_guard_stays_quiet_on_a_good_model(trained_data, tmp_path, deterministic):
    from edgecnn.dataset import load_windows
    from edgecnn.train import train_run

    result = train_run(load_windows(trained_data), out=tmp_path / "run", arch="edge", epochs=10, seed=0, quiet=True,
                       use_cache=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert result.metrics["test"]["accuracy"] >= 0.9
    assert metrics["degenerate"] is False and metrics["degenerate_reasons"] == []


@pytest.mark.slow
def test_the_guard_fires_on_shuffled_labels_and_strict_exits_1(tmp_path):
    from edgecnn import synth

    data = synth.generate(n=480, seed=3, n_recordings=48, difficulty=0.3)
    rng = np.random.default_rng(7)
    data["label"] = data["label"][rng.permutation(len(data["label"]))]  # labels no longer follow the signal
    del data["recording"], data["machines"]  # each window its own recording (labels differ within one)
    path = tmp_path / "shuffled.pkl"
    path.write_bytes(pickle.dumps(data))
    out = tmp_path / "run"
    # TF_DETERMINISTIC_OPS: the CLI's process runs with op determinism (fit seeds Keras itself).
    proc = run_cli("train", "--data", str(path), "--epochs", "8", "--strict", "--quiet", "--no-cache",
                   "--out", str(out), TF_DETERMINISTIC_OPS="1")
    assert proc.returncode == 1, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning: degenerate model" in line]
    assert len(warnings) == 1 and "Likely cause:" in warnings[0]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["degenerate"] is True and metrics["degenerate_reasons"] and metrics["degenerate_cause"]


def test_the_report_shows_the_flag_with_its_reasons_and_cause():
    from edgecnn.report import render_html
    from edgecnn.report.read import ReportInputs

    metrics = {"test": {"n": 26, "accuracy": 0.5, "per_class": {}, "confusion_matrix": [[0, 13], [0, 13]]},
               "degenerate": True, "degenerate_reasons": ["test: 100% of 26 windows predicted 'B'"],
               "degenerate_cause": "a near-chance epoch was restored (epoch 1, validation accuracy 50.0%)"}
    page = render_html(ReportInputs(title="run", generated="2026-01-01T00:00:00+00:00", metrics=metrics))
    assert "Degenerate model" in page and "100% of 26 windows predicted &#39;B&#39;" in page
    assert "Likely cause: a near-chance epoch was restored (epoch 1" in page
    quiet = render_html(ReportInputs(title="run", generated="2026-01-01T00:00:00+00:00",
                                     metrics={**metrics, "degenerate": False}))
    assert "Degenerate model" not in quiet
