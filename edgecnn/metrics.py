"""Classification and output-error metrics (numpy only): shared by training, parity and the device side.

``classification_report`` gives what a user reads to trust a model (accuracy, per-class precision and
recall, confusion matrix, accuracy per recording, so failing recordings stand out).
``output_error`` compares a variant's probabilities with a reference's, as STM32Cube.AI's validation
reports them (max and mean absolute error, RMSE, cosine similarity, relative L2 error) plus prediction
agreement.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows: true class, columns: predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)), 1)
    return cm


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, classes: list[str], *,
                          groups: np.ndarray | None = None,
                          recording_ids: list[str] | None = None) -> dict[str, Any]:
    """Accuracy, per-class precision/recall/support, confusion matrix and, with groups, per-recording accuracy."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    cm = confusion_matrix(y_true, y_pred, len(classes))
    tp = np.diag(cm).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    support = cm.sum(axis=1).astype(float)
    per_class = {
        name: {"precision": float(tp[i] / predicted[i]) if predicted[i] else None,
               "recall": float(tp[i] / support[i]) if support[i] else None,
               "support": int(support[i])}
        for i, name in enumerate(classes)
    }
    report: dict[str, Any] = {
        "n": int(y_true.size),
        "accuracy": float((y_true == y_pred).mean()) if y_true.size else None,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }
    if groups is not None:
        groups = np.asarray(groups)
        rows = []
        for g in np.unique(groups):
            mask = groups == g
            rows.append({"recording": recording_ids[int(g)] if recording_ids is not None else str(g),
                         "class": classes[int(np.bincount(y_true[mask]).argmax())],
                         "n": int(mask.sum()), "accuracy": float((y_true[mask] == y_pred[mask]).mean())})
        report["per_recording"] = sorted(rows, key=lambda r: (r["accuracy"], r["recording"]))
    return report


def output_error(reference: np.ndarray, variant: np.ndarray) -> dict[str, float]:
    """How far a variant's outputs (N, C) are from the reference's: agreement and error metrics."""
    ref = np.asarray(reference, dtype=np.float64)
    var = np.asarray(variant, dtype=np.float64)
    if ref.shape != var.shape:
        raise ValueError(f"output shapes differ: {ref.shape} vs {var.shape}")
    diff = var - ref
    ref_norm = np.linalg.norm(ref)
    denom = np.linalg.norm(ref, axis=1) * np.linalg.norm(var, axis=1)
    cosine = np.where(denom > 0, np.sum(ref * var, axis=1) / np.where(denom > 0, denom, 1.0), 1.0)
    return {
        "agreement": float((ref.argmax(axis=1) == var.argmax(axis=1)).mean()),
        "max_abs_error": float(np.abs(diff).max()) if diff.size else 0.0,
        "mean_abs_error": float(np.abs(diff).mean()) if diff.size else 0.0,
        "rmse": float(np.sqrt(np.mean(diff**2))) if diff.size else 0.0,
        "cosine_similarity": float(cosine.mean()) if cosine.size else 1.0,
        "relative_l2_error": float(np.linalg.norm(diff) / ref_norm) if ref_norm > 0 else 0.0,
    }
