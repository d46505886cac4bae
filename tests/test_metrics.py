import numpy as np
import pytest

from edgecnn.metrics import classification_report, confusion_matrix, output_error


def test_confusion_and_report_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 1, 1])
    y_pred = np.array([0, 1, 0, 1, 1, 0, 1])
    assert confusion_matrix(y_true, y_pred, 2).tolist() == [[2, 1], [1, 3]]
    groups = np.array([0, 0, 0, 1, 1, 2, 2])
    rep = classification_report(y_true, y_pred, ["A", "B"], groups=groups, recording_ids=["r0", "r1", "r2"])
    assert rep["accuracy"] == pytest.approx(5 / 7)
    assert rep["per_class"]["A"] == {"precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3), "support": 3}
    assert rep["per_class"]["B"]["recall"] == pytest.approx(3 / 4)
    # worst recordings first, so a user sees what fails
    assert [r["recording"] for r in rep["per_recording"]] == ["r2", "r0", "r1"]
    assert rep["per_recording"][0] == {"recording": "r2", "class": "B", "n": 2, "accuracy": 0.5}


def test_output_error_metrics():
    ref = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    var = np.array([[0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    err = output_error(ref, var)
    assert err["agreement"] == pytest.approx(2 / 3)
    assert err["max_abs_error"] == pytest.approx(0.2)
    assert err["mean_abs_error"] == pytest.approx((0.1 * 4 + 0.2 * 2) / 6)
    assert err["rmse"] == pytest.approx(np.sqrt((0.01 * 4 + 0.04 * 2) / 6))
    assert err["relative_l2_error"] == pytest.approx(np.linalg.norm(var - ref) / np.linalg.norm(ref))
    assert output_error(ref, ref)["cosine_similarity"] == pytest.approx(1.0)
    assert output_error(ref, ref)["rmse"] == 0.0
