"""The run's sections: the models of a folder, the data, training, test results, accuracy per recording.

Data functions only (see :mod:`edgecnn.report.sections`): ReportInputs in, plain data or Missing out.
"""

from __future__ import annotations

from edgecnn.report.read import ReportInputs
from edgecnn.report.sections import Missing, pick


def compared(inputs: ReportInputs) -> dict | None:
    """Models in this folder: one row per bundle of a folder holding several; left out otherwise."""
    if not inputs.compared:
        return None
    return {"described": inputs.compared[0]["bundle"], "bundles": inputs.compared}


def data(inputs: ReportInputs) -> dict | Missing:
    """The training data: windows, recordings, classes, what was left out, the split, calibration."""
    summary = (inputs.run_config or {}).get("data") or inputs.training.get("data") or {}
    if not summary and not inputs.split:
        return Missing("No data summary: the run directory was not found.", "edgecnn report RUN_DIR")
    n = summary.get("n_windows")
    dropped = summary.get("dropped") or {}
    split = inputs.split or inputs.training.get("split") or {}  # the manifest keeps the run's split too
    windows = split.get("windows") or {}
    calibration = (inputs.manifest or {}).get("calibration")
    return {"source": summary.get("source"), "windows": n,
            "recordings": summary.get("n_recordings") or summary.get("recordings"),
            "classes": [str(c) for c in summary.get("classes") or []],
            "unmapped": dropped.get("unmapped", 0), "too_short": dropped.get("too_short", 0),
            "label_map": (inputs.run_config or {}).get("label_map") or inputs.training.get("label_map"),
            "per_class": [{"name": c, "windows": v, "share": v / n if n else None}
                          for c, v in (summary.get("windows_per_class") or {}).items()],
            "split": {"parts": [{"name": part, "recordings": len(split.get(part) or []), "windows": windows.get(part)}
                                for part in ("train", "validation", "test")],
                      "seed": split.get("seed", inputs.training.get("seed")),
                      "validation_rule": split.get("validation_rule")} if split else None,
            "calibration": pick(calibration, ("windows", "per_class", "seed")) if calibration else None,
            "examples": inputs.images.get("example_spectrograms")}


def training(inputs: ReportInputs) -> dict | Missing:
    """How the model learned: architecture, size, epochs, optimiser settings, the curves.

    From the run directory, else from the summary of it the bundle's manifest keeps (no history there).
    """
    run, history, metrics = inputs.run_config or inputs.training, inputs.history or {}, inputs.metrics or {}
    no_run = Missing("No run directory found; the training curves live there.", "edgecnn report RUN_DIR")
    if not run:
        return no_run
    settings = run.get("training") or {}
    footprint = run.get("footprint") or {}
    return {"arch": run.get("arch"), "parameters": footprint.get("params"), "macs": footprint.get("macs"),
            "epochs_run": len(history["loss"]) if history.get("loss") else None, "epochs_max": settings.get("epochs"),
            "kept_epoch": history.get("best_epoch"),
            "seconds_per_epoch": history.get("seconds_per_epoch") or metrics.get("seconds_per_epoch"),
            "batch_size": settings.get("batch_size"), "learning_rate": settings.get("learning_rate"),
            "normalisation": settings.get("normalisation"), "devices": settings.get("devices") or [],
            "validation_accuracy": metrics.get("validation_accuracy"),
            "curves": inputs.images.get("training_curves"), "no_run": None if inputs.run_config else no_run}


def results(inputs: ReportInputs) -> dict | Missing:
    """Test results of the float model, and the confusion matrix of each deployed format on parity's windows."""
    test = (inputs.metrics or {}).get("test") or {}
    model = (inputs.parity or {}).get("model_level") or {}
    variants = model.get("variants") or {}
    formats = [{"name": name, "matrix": v["confusion_matrix"]} for name, v in variants.items()
               if (name == model.get("reference") or v.get("dtype") == "int8") and v.get("confusion_matrix")]
    metrics = inputs.metrics or {}
    estimate = metrics.get("estimate")
    if not test and not formats and not estimate:
        return Missing("No test results: neither a run directory nor a parity result was found.",
                       "edgecnn parity BUNDLE --data DATA")
    per_class = [{"name": name, **pick(v, ("precision", "recall", "support"))}
                 for name, v in (test.get("per_class") or {}).items()]
    return {"test": {"n": test.get("n"), "accuracy": test.get("accuracy"), "per_class": per_class} if test else None,
            "confusion": inputs.images.get("confusion_matrix"), "prediction": inputs.images.get("test_prediction"),
            "formats": formats, "selection": model.get("selection"), "classes": inputs.classes,
            "estimate": estimate, "degenerate": degenerate(metrics)}


def degenerate(doc: dict) -> dict | None:
    """The degenerate-model guard's finding (edgecnn/guard.py) in metrics.json, when it flagged the model."""
    if not doc.get("degenerate"):
        return None
    return {"reasons": doc.get("degenerate_reasons") or [], "cause": doc.get("degenerate_cause")}


#: The int8 formats whose accuracy per recording parity reports, in column order.
RECORDING_COLUMNS = ("tflite_int8/litert", "tflite_int8/tflm", "onnx_int8/onnxruntime")


def recordings(inputs: ReportInputs) -> dict | Missing:
    """Accuracy per test recording, float and each int8 format, the worst recording first."""
    columns: list[tuple[str, dict[str, dict]]] = []
    test = (inputs.metrics or {}).get("test") or {}
    if test.get("per_recording"):
        columns.append(("float (training)", {r["recording"]: r for r in test["per_recording"]}))
    variants = ((inputs.parity or {}).get("model_level") or {}).get("variants") or {}
    for name in RECORDING_COLUMNS:
        if (variants.get(name) or {}).get("per_recording"):
            columns.append((name, {r["recording"]: r for r in variants[name]["per_recording"]}))
    if not columns:
        return Missing("No per-recording figures found.", "edgecnn report RUN_DIR")
    ids = {rid for _, col in columns for rid in col}
    rows = []
    for rid in ids:
        info = next(col[rid] for _, col in columns if rid in col)
        accuracies = [(col.get(rid) or {}).get("accuracy") for _, col in columns]
        known = [a for a in accuracies if a is not None]
        rows.append({"recording": rid, "class": info.get("class"), "windows": info.get("n"),
                     "accuracies": accuracies, "worst": min(known) if known else None})
    rows.sort(key=lambda r: (2.0 if r["worst"] is None else r["worst"], str(r["recording"])))
    return {"columns": [name for name, _ in columns], "rows": rows}


def cross_validation(inputs: ReportInputs) -> dict | Missing:
    """``edgecnn cv``'s result: pooled accuracy, per fold, per recording (worst first), the heat map."""
    doc = inputs.cv
    if not doc:
        return Missing("No cross-validation across conditions (the figure to trust before deploying on other "
                       "loads, fault sizes or machines).", "edgecnn cv --data DATA --by KEY --out RUN_DIR/cv")
    summary = doc.get("summary") or {}
    rows = sorted(doc.get("recordings") or [], key=lambda r: ((r.get("int8_stats") or {}).get("min", 2.0),
                                                               str(r.get("recording"))))
    return {"by": doc.get("by"), "arch": doc.get("arch"), "seeds": doc.get("seeds") or [],
            "float": summary.get("float") or {}, "int8": summary.get("int8") or {},
            "drop": summary.get("int8_drop") or {}, "notes": doc.get("notes") or [],
            "folds": doc.get("folds") or [], "recordings": rows,
            "degenerate": {"reasons": (summary.get("degenerate_reasons") or [])
                           + [f"seed {r['seed']}, fold {r['fold']}: {'; '.join(r['reasons'])}. "
                              f"Likely cause: {r['cause']}" for r in summary.get("degenerate_runs") or []]}
            if summary.get("degenerate") else None,
            "heatmap": inputs.images.get("cv_heatmap")}
