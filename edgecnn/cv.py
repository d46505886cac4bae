"""Cross-validation across conditions: leave one group of recordings out, for every group and seed.

``cross_validate(data, cfg, by="load_hp")`` groups the recordings by a metadata key (``load_hp``,
``fault_diameter_in``, ``load_lb``, ``machine``, ...) or by ``recording`` itself, and lets
scikit-learn's ``LeaveOneGroupOut`` hold each group out in turn. Every fold trains with
``edgecnn.train.train_model`` (the one training step of ``edgecnn train``, same defaults; its
validation side is drawn from the fold's training recordings, never from the held-out group),
quantises the model to int8 (``export.tflite_export``, calibrated on the fold's training windows)
and scores float and int8 per held-out recording, the int8 model through the device-side
interpreter (``firmware_sim.interpreters``). Each recording is tested exactly once per seed.

A class whose recordings all share one group value (CWRU's one normal recording, cut in time into
segments) would be missing from the training side of the fold that holds that value out; its
segments are therefore spread over the folds (segment i tested in fold i mod k), and the document
says so in ``notes``.

:func:`write_outputs` writes ``cv.json``, ``cv.md`` (per-fold and per-recording tables, mean and
spread over seeds) and ``cv.png`` (accuracy heat map, recording x fold). Training side (TensorFlow).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import guard
from edgecnn.config import SpectrogramConfig
from edgecnn.dataset import WindowSet
from edgecnn.errors import ConfigError, InputError
from edgecnn.fileio import atomic_write, save_figure, write_json

CV_FILE, CV_MARKDOWN, CV_PLOT = "cv.json", "cv.md", "cv.png"
CV_FORMAT = "edgecnn-cv"
#: Keys suggested in errors; any metadata key every recording carries works.
KNOWN_KEYS = ("load_hp", "fault_diameter_in", "load_lb", "machine", "recording")


@dataclasses.dataclass
class Fold:
    name: str
    """``KEY=VALUE`` of the group held out."""
    value: str
    train_idx: np.ndarray
    test_idx: np.ndarray


def _natural(value: str) -> tuple:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def recording_groups(data: WindowSet, by: str) -> tuple[list[str], list[str]]:
    """Each recording's group value under ``by`` and notes on reassigned segments (see the module doc)."""
    recs = data.recordings
    if by == "recording":
        values = [str(r["id"]) for r in recs]
    else:
        missing = [r["id"] for r in recs if r.get(by) is None]
        if missing:
            common = sorted(set.intersection(*(set(k for k, v in r.items() if v is not None) for r in recs))
                            - {"id", "label", "class", "source", "fs", "n_windows", "segment"})
            raise InputError(f"--by {by}: {len(missing)} recording(s) (e.g. {missing[0]}) have no {by!r} "
                             f"metadata; keys every recording has: {common + ['recording']}")
        values = [str(recs[i][by]) for i in range(len(recs))]
    distinct = sorted(set(values), key=_natural)
    if len(distinct) < 2:
        raise InputError(f"--by {by}: every recording has {by}={distinct[0]}; leaving one group out needs two "
                         f"or more values (try --by recording)")
    notes = []
    for cls in data.classes:
        members = [i for i, r in enumerate(recs) if r["class"] == cls]
        held = {values[i] for i in members}
        if len(held) > 1 or not members:
            continue
        if len(members) >= 2 and all("segment" in recs[i] for i in members):
            for k, i in enumerate(sorted(members, key=lambda i: recs[i]["segment"])):
                values[i] = distinct[k % len(distinct)]
            notes.append(f"every {cls!r} window comes from one recording ({by}={held.pop()}), cut in time into "
                         f"{len(members)} segments; segment i is tested in fold i mod {len(distinct)}, so each "
                         f"fold trains on the other segments (generalisation over time, not across {by})")
        else:
            raise InputError(f"--by {by}: every {cls!r} recording has {by}={held.pop()}; the fold leaving it out "
                             f"would train without {cls!r}. Choose another key or add {cls!r} recordings")
    return values, notes


def make_folds(data: WindowSet, by: str, n_folds: int | None = None) -> tuple[list[Fold], list[str]]:
    """Leave-one-group-out folds (scikit-learn's LeaveOneGroupOut) and notes on the grouping; with
    ``n_folds``, groups are left out ``n_folds`` at a time (``GroupKFold``: each group tested once)."""
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

    values, notes = recording_groups(data, by)
    order = sorted(set(values), key=_natural)
    codes = np.array([order.index(v) for v in values], dtype=np.int64)[data.groups]
    if n_folds is not None and not 2 <= n_folds <= len(order):
        raise ConfigError(f"--folds {n_folds} must be in [2, {len(order)}] (the {by} values present)")
    splitter = LeaveOneGroupOut() if n_folds is None or n_folds == len(order) else GroupKFold(n_splits=n_folds)
    folds = []
    for train_idx, test_idx in splitter.split(np.zeros((len(data), 1)), data.labels, groups=codes):
        left_out = sorted({order[int(c)] for c in np.unique(codes[test_idx])}, key=_natural)
        value = ",".join(left_out)
        name = value if by == "recording" else f"{by}={value}"
        absent = [data.classes[c] for c in range(len(data.classes)) if not np.any(data.labels[train_idx] == c)]
        if absent:
            raise InputError(f"fold {name}: its training side holds no {absent} windows; choose another --by")
        folds.append(Fold(name=name, value=value, train_idx=train_idx, test_idx=test_idx))
    return folds, notes


def int8_probabilities(model: Any, calibration: np.ndarray, images: np.ndarray) -> np.ndarray:
    """Quantise ``model`` to int8 (calibrated on ``calibration`` images) and run it on ``images``
    through the device-side LiteRT interpreter, as a bundle's ``model_int8.tflite`` would run."""
    from export import tflite_export
    from export.bundle import ModelEntry
    from export.footprint import captured_native_output
    from firmware_sim.interpreters import TFLiteInterpreter

    with captured_native_output():  # the converter's native logging, as `edgecnn export` keeps it off
        flat = tflite_export.convert(model, "int8", representative=(img[None] for img in calibration))
    with tempfile.TemporaryDirectory(prefix="edgecnn-cv-") as tmp:
        path = Path(tmp) / "model_int8.tflite"
        path.write_bytes(flat)
        inp, out = tflite_export.tensor_specs(str(path))
        entry = ModelEntry(file=path.name, format="tflite", dtype="int8", sha256="", bytes=len(flat), input=inp,
                           output=out, parameters=None, macs=None, arena_bytes=None)
        interp = TFLiteInterpreter().load(path, entry)
        try:
            return interp.run_batch(images, max_batch=256)
        finally:
            interp.close()


def cross_validate(data: WindowSet, cfg: SpectrogramConfig | None = None, *, by: str,
                   seeds: tuple[int, ...] = (0, 1, 2), arch: str = "edge", options: Any = None,
                   normalisation: str | None = None, val_fraction: float = 0.2, overlap: float = 0.0,
                   cache_dir: str | Path | None = None, use_cache: bool = True, quiet: bool = False,
                   raw: np.ndarray | None = None, data_source: str | None = None,
                   label_map: str | None = None, say=None, augmentation=None,
                   n_folds: int | None = None) -> dict[str, Any]:
    """Leave-one-group-out cross-validation; returns the cv document (see :func:`write_outputs`).

    ``options`` is an ``edgecnn.fit.FitOptions`` (its seed is replaced by each of ``seeds``; default:
    FitOptions(), the defaults of ``edgecnn train``). ``raw``: every window's un-normalised features
    when the caller has them already. ``say(line)`` receives the progress lines (default: stderr
    unless ``quiet``).
    """
    from edgecnn.feature_cache import raw_features
    from edgecnn.fit import FitOptions, log, predict
    from edgecnn.progress import Progress
    from edgecnn.train import CALIBRATION_WINDOWS, default_config, stratified_sample, train_model

    say = say or (lambda line: log(line, quiet))
    if not seeds:
        raise ConfigError("cross-validation needs at least one seed")
    cfg = cfg or default_config(arch)
    if cfg.is_normalised:
        cfg = cfg.replace(norm_mean=(0.0,), norm_std=(1.0,))  # fitted per fold on its training side
    if data.windows.shape[1] != cfg.window_samples:
        raise InputError(f"windows have {data.windows.shape[1]} samples; the config needs {cfg.window_samples}")
    options = options or FitOptions()
    folds, notes = make_folds(data, by, n_folds)
    if raw is None:
        raw, _ = raw_features(data.windows, cfg, cache_dir=cache_dir, use_cache=use_cache,
                              progress=Progress("spectrograms", quiet=quiet))
    rec_ids = [str(r["id"]) for r in data.recordings]
    for note in notes:
        say(f"cv: note: {note}")
    say(f"cv: {len(folds)} folds by {by} x {len(seeds)} seed(s) = {len(folds) * len(seeds)} trainings "
        f"({arch}, {len(data)} windows, {len(data.recordings)} recordings)")

    runs: dict[tuple[int, int], dict[str, Any]] = {}
    pooled = {s: {"float": np.full(len(data), -1), "int8": np.full(len(data), -1)} for s in seeds}
    quiet_fit = dataclasses.replace(options, quiet=True)
    for seed in seeds:
        for k, fold in enumerate(folds):
            start = time.perf_counter()
            trained = train_model(data, fold.train_idx, raw, cfg, arch=arch,
                                  options=dataclasses.replace(quiet_fit, seed=seed), normalisation=normalisation,
                                  val_fraction=val_fraction, overlap=overlap, augmentation=augmentation)
            test = fold.test_idx
            float_pred = predict(trained.model, trained.images[test]).argmax(axis=1)
            calib = fold.train_idx[stratified_sample(data.labels[fold.train_idx], CALIBRATION_WINDOWS, seed)]
            int8_pred = int8_probabilities(trained.model, trained.images[calib], trained.images[test]).argmax(axis=1)
            pooled[seed]["float"][test], pooled[seed]["int8"][test] = float_pred, int8_pred
            val_pred = predict(trained.model, trained.images[trained.val_idx]).argmax(axis=1)
            verdict = trained.verdict(data, {"validation": (data.labels[trained.val_idx], val_pred),
                                             "test": (data.labels[test], float_pred)})
            run = {"seed": seed, "n": int(test.size),
                   "float": float(np.mean(float_pred == data.labels[test])),
                   "int8": float(np.mean(int8_pred == data.labels[test])),
                   "validation_accuracy": float(np.mean(val_pred == data.labels[trained.val_idx]))
                   if trained.val_idx.size else None,
                   "validation_rule": trained.val_rule, "best_epoch": trained.fit.best_epoch,
                   "epochs_run": len(trained.fit.history.get("loss", [])),
                   "seconds": round(time.perf_counter() - start, 1), **verdict.to_json()}
            runs[seed, k] = run
            normalisation = trained.normalisation  # the arch's default, resolved by train_model
            say(f"cv: seed {seed} fold {k + 1}/{len(folds)} {fold.name} ({np.unique(data.groups[test]).size} "
                f"recording(s), {test.size} windows): float {run['float']:.4f}, int8 {run['int8']:.4f}, "
                f"epoch {run['best_epoch']} of {run['epochs_run']}, {run['seconds']:.0f} s")
            if verdict.degenerate:
                say(f"cv: seed {seed} fold {fold.name}: {verdict.warning()}")

    doc = _document(data, folds, notes, runs, pooled, seeds=tuple(seeds), by=by, arch=arch, rec_ids=rec_ids)
    from edgecnn.augment import Augmentation

    doc["training"] = {"epochs": options.epochs, "min_epochs": options.min_epochs, "patience": options.patience,
                       "batch_size": options.batch_size, "learning_rate": options.learning_rate,
                       "normalisation": normalisation, "val_fraction": val_fraction, "overlap": overlap,
                       "feature": cfg.feature, "transform": cfg.transform,
                       "augmentation": (augmentation or Augmentation()).to_dict()}
    doc["data"] = {"source": data_source, "label_map": label_map, "n_windows": len(data),
                   "recordings": len(data.recordings), "classes": list(data.classes)}
    return doc


def _stats(values: list[float]) -> dict[str, float | None]:
    arr = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if not arr.size:
        return {"mean": None, "std": None, "min": None, "max": None}
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0,
            "min": float(arr.min()), "max": float(arr.max())}


def _document(data: WindowSet, folds: list[Fold], notes: list[str], runs, pooled, *, seeds, by, arch,
              rec_ids) -> dict[str, Any]:
    fold_docs, recordings = [], []
    for k, fold in enumerate(folds):
        fold_runs = [runs[s, k] for s in seeds]
        fold_docs.append({"name": fold.name, "value": fold.value, "test": data.recording_ids(fold.test_idx),
                          "train": data.recording_ids(fold.train_idx), "n": int(fold.test_idx.size),
                          "runs": fold_runs, "float": _stats([r["float"] for r in fold_runs]),
                          "int8": _stats([r["int8"] for r in fold_runs])})
        for g in np.unique(data.groups[fold.test_idx]):
            mask = data.groups == g
            truth = data.labels[mask]
            row = {"recording": rec_ids[int(g)], "class": data.recordings[int(g)]["class"], "fold": fold.name,
                   "n": int(mask.sum())}
            for kind in ("float", "int8"):
                row[kind] = [float(np.mean(pooled[s][kind][mask] == truth)) for s in seeds]
                row[f"{kind}_stats"] = _stats(row[kind])
            recordings.append(row)
    summary: dict[str, Any] = {}
    for kind in ("float", "int8"):
        per_seed = [float(np.mean(pooled[s][kind] == data.labels)) for s in seeds]
        summary[kind] = {"per_seed": per_seed, **_stats(per_seed)}
    summary["int8_drop"] = _stats([f - i for f, i in zip(summary["float"]["per_seed"], summary["int8"]["per_seed"])])
    reasons = []
    for s in seeds:
        reasons += guard.check_predictions(f"all folds, seed {s}", data.labels, pooled[s]["float"], data.classes)
    flagged = [{"seed": s, "fold": folds[k].name, "reasons": r["degenerate_reasons"], "cause": r["degenerate_cause"]}
               for (s, k), r in sorted(runs.items()) if r["degenerate"]]
    summary["degenerate"] = bool(reasons or flagged)
    summary["degenerate_reasons"] = reasons
    summary["degenerate_runs"] = flagged
    worst = min(recordings, key=lambda r: (r["int8_stats"]["min"], r["recording"]))
    summary["worst_recording"] = {"recording": worst["recording"], "fold": worst["fold"],
                                  "int8_min": worst["int8_stats"]["min"], "float_min": worst["float_stats"]["min"]}
    return {"format": CV_FORMAT, "version": 1, "by": by, "arch": arch, "seeds": list(seeds),
            "classes": list(data.classes), "notes": notes, "folds": fold_docs,
            "recordings": sorted(recordings, key=lambda r: (_natural(r["fold"].split("=")[-1]), r["recording"])),
            "summary": summary}


# --- outputs -----------------------------------------------------------------------------------------------
def _pm(stats: dict[str, float | None]) -> str:
    if stats.get("mean") is None:
        return "-"
    return f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"


def summary_line(doc: dict[str, Any]) -> str:
    """One line: the cross-validated accuracy a user should trust, float and int8, and the worst recording."""
    s = doc["summary"]
    worst = s["worst_recording"]
    return (f"cross-validated ({len(doc['folds'])} folds by {doc['by']}, {len(doc['seeds'])} seed(s)): "
            f"float {_pm(s['float'])} %, int8 {_pm(s['int8'])} %; worst recording {worst['recording']} "
            f"(int8 {100 * worst['int8_min']:.1f} %)")


def markdown(doc: dict[str, Any]) -> str:
    """cv.md: what was run, the pooled result, a per-fold and a per-recording table."""
    s, seeds = doc["summary"], ", ".join(str(x) for x in doc["seeds"])
    data, training = doc.get("data") or {}, doc.get("training") or {}
    lines = [f"# Cross-validation: leave one {doc['by']} out ({doc['arch']}, seeds {seeds})", "",
             f"Data: `{data.get('source')}`, label map `{data.get('label_map')}`, classes {', '.join(doc['classes'])}, "
             f"{data.get('recordings')} recordings, {data.get('n_windows')} windows. Training: "
             + ", ".join(f"{k} {v}" for k, v in training.items()) + ".", "",
             "Accuracy over every window, each tested once per seed (mean ± standard deviation over seeds, "
             "percent):", "",
             "| | float | int8 | float - int8 |", "|---|---|---|---|",
             f"| all folds | {_pm(s['float'])} | {_pm(s['int8'])} | {_pm(s['int8_drop'])} |", ""]
    for note in doc.get("notes") or []:
        lines += [f"Note: {note}.", ""]
    if s.get("degenerate"):
        lines += ["## Degenerate models (edgecnn/guard.py)", ""]
        lines += [f"- {reason}" for reason in s["degenerate_reasons"]]
        lines += [f"- seed {r['seed']}, fold {r['fold']}: {'; '.join(r['reasons'])}. Likely cause: {r['cause']}"
                  for r in s["degenerate_runs"]]
        lines.append("")
    lines += ["## Per fold", "", "| fold | test recordings | windows | float | int8 | epoch restored (per seed) |",
              "|---|---|---|---|---|---|"]
    for fold in doc["folds"]:
        epochs = ", ".join(str(r["best_epoch"]) for r in fold["runs"])
        flag = " (degenerate)" if any(r["degenerate"] for r in fold["runs"]) else ""
        lines.append(f"| {fold['name']}{flag} | {', '.join(fold['test'])} | {fold['n']} | {_pm(fold['float'])} | "
                     f"{_pm(fold['int8'])} | {epochs} |")
    lines += ["", "## Per recording", "", "| recording | class | fold | windows | float | int8 | int8 lowest seed |",
              "|---|---|---|---|---|---|---|"]
    for row in doc["recordings"]:
        lines.append(f"| {row['recording']} | {row['class']} | {row['fold']} | {row['n']} | "
                     f"{_pm(row['float_stats'])} | {_pm(row['int8_stats'])} | {100 * row['int8_stats']['min']:.1f} |")
    return "\n".join(lines) + "\n"


def plot_heatmap(doc: dict[str, Any], path: str | Path) -> Path:
    """cv.png: mean accuracy over seeds per recording (rows) and fold (columns), float and int8 side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folds = [f["name"] for f in doc["folds"]]
    rows = doc["recordings"]
    fig, axes = plt.subplots(1, 2, figsize=(2.0 + 1.1 * len(folds) * 2, 1.2 + 0.32 * len(rows)),
                             squeeze=False, constrained_layout=True)
    image = None
    for ax, kind in zip(axes[0], ("float", "int8")):
        grid = np.full((len(rows), len(folds)), np.nan)
        for i, row in enumerate(rows):
            grid[i, folds.index(row["fold"])] = row[f"{kind}_stats"]["mean"]
        cmap = matplotlib.colormaps["RdYlGn"].copy()
        cmap.set_bad("#eeeeee")
        image = ax.imshow(np.ma.masked_invalid(100 * grid), cmap=cmap, vmin=0, vmax=100, aspect="auto")
        for i, j in zip(*np.nonzero(np.isfinite(grid))):
            ax.text(j, i, f"{100 * grid[i, j]:.0f}", ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(folds)), folds, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(rows)), [r["recording"] for r in rows] if kind == "float" else [""] * len(rows),
                      fontsize=7)
        ax.set_title(f"{kind}: accuracy (%) held out", fontsize=9)
        ax.set_xlabel(f"fold (held-out {doc['by']})", fontsize=8)
    fig.colorbar(image, ax=axes, label="accuracy (%), mean over seeds", shrink=0.8)
    fig.suptitle(f"{doc['arch']}: leave one {doc['by']} out, seeds {', '.join(str(s) for s in doc['seeds'])}",
                 fontsize=10)
    try:
        return save_figure(fig, path, dpi=90)
    finally:
        plt.close(fig)


def write_outputs(doc: dict[str, Any], folder: str | Path) -> Path:
    """Write cv.json, cv.md and cv.png into ``folder`` (created); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / CV_FILE, doc)
    atomic_write(folder / CV_MARKDOWN, markdown(doc))
    plot_heatmap(doc, folder / CV_PLOT)
    return folder


def parse_seeds(text: str) -> tuple[int, ...]:
    """``0,1,2`` -> (0, 1, 2); a one-line ConfigError otherwise."""
    try:
        seeds = tuple(int(part) for part in str(text).split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"--seeds {text!r}: give integers separated by commas, e.g. 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r}: give one or more distinct integers, e.g. 0,1,2")
    return seeds


__all__ = ["CV_FILE", "Fold", "cross_validate", "make_folds", "markdown", "parse_seeds", "recording_groups",
           "summary_line", "write_outputs"]

