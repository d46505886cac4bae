"""``train_run``: labelled windows in, a complete run directory out (edgecnn/rundir.py's contract).

Steps: split by recording (test side, then a validation side inside training), spectrograms once
(cached), normalisation fitted on the training split only, ``edgecnn.fit`` (devices, strategies,
early stopping), evaluation on the test recordings, then the run directory written atomically
(a temporary folder renamed into place; an existing run is kept unless ``force``).

Training side only (TensorFlow via edgecnn.fit and edgecnn.models).
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import dsp, guard, rundir
from edgecnn.augment import Augmentation, augment_training
from edgecnn.config import SpectrogramConfig
from edgecnn.dataset import WindowSet, has_metadata, split_by_recording
from edgecnn.errors import ConfigError, InputError
from edgecnn.feature_cache import normalise, raw_features
from edgecnn.fileio import write_json
from edgecnn.fit import FitOptions, FitResult, fit, is_chief, log, predict
from edgecnn.metrics import classification_report
from edgecnn.progress import Progress

#: Feature transform each architecture trains on unless told otherwise: the seed model keeps the
#: reference notebook's raw magnitudes; the edge model needs log features (docs/training.md).
DEFAULT_TRANSFORM = {"seed": "magnitude", "edge": "log"}
#: Normalisation unless told otherwise: none for the seed model (as the reference), per bin for edge.
DEFAULT_NORMALISATION = {"seed": "none", "edge": "per_bin"}


def default_normalisation(arch: str, cfg: SpectrogramConfig) -> str:
    """Normalisation unless told otherwise: ``DEFAULT_NORMALISATION``, except that envelope images are
    normalised globally. Per-row constants fitted on a few recordings reweight rows (modulation
    frequencies) by how much those recordings happened to vary there; a line at a row where every
    training recording was flat is then magnified without bound. On CWRU leaving a fault diameter
    out (3 seeds) that took the envelope edge CNN from 99.8 % (global) to 88.4 % (per row)."""
    if cfg.feature == "envelope" and arch == "edge":
        return "global"
    return DEFAULT_NORMALISATION.get(arch, "per_bin")
NORMALISATIONS = ("per_bin", "global", "none")
CALIBRATION_WINDOWS = 200


@dataclasses.dataclass
class TrainResult:
    out: Path
    """The run directory written (on a non-chief multi-worker process: its copy ``RUN_DIR.worker<i>``)."""
    cfg: SpectrogramConfig
    """DSP config with the fitted normalisation."""
    metrics: dict[str, Any]
    history: dict[str, list[float]]
    footprint: dict[str, int]
    seconds_per_epoch: float
    model: Any


#: Feature each architecture trains on unless told otherwise: the seed model keeps the reference
#: notebook's spectrogram; the edge model reads the envelope spectrum with its level removed, which
#: generalises across loads, fault sizes and machines (docs/training_results.md).
DEFAULT_FEATURE = {"seed": "spectrogram", "edge": "envelope"}


def default_config(arch: str, transform: str | None = None, feature: str | None = None) -> SpectrogramConfig:
    """The DSP config an architecture trains on unless told otherwise (``--transform``/``--feature``)."""
    feature = feature or DEFAULT_FEATURE.get(arch, "spectrogram")
    transform = transform or DEFAULT_TRANSFORM.get(arch, "log")
    level = "column_mean" if feature == "envelope" and transform == "log" else "none"
    return SpectrogramConfig(transform=transform, feature=feature, level=level)


def stratified_sample(labels: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """Up to ``limit`` indices, each class in proportion (at least one each), sorted."""
    labels = np.asarray(labels)
    if labels.size <= limit:
        return np.arange(labels.size)
    rng = np.random.default_rng(seed)
    chosen = []
    classes, counts = np.unique(labels, return_counts=True)
    for cls, count in zip(classes, counts):
        take = max(1, int(round(limit * count / labels.size)))
        members = np.flatnonzero(labels == cls)
        chosen.append(rng.choice(members, size=min(take, members.size), replace=False))
    picked = np.concatenate(chosen)
    if picked.size > limit:
        picked = rng.choice(picked, size=limit, replace=False)
    return np.sort(picked)


def tool_versions() -> dict[str, str]:
    import keras
    import scipy
    import tensorflow as tf

    from edgecnn import __version__

    return {"edgecnn": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "tensorflow": tf.__version__, "keras": keras.__version__}


def validation_split(data: WindowSet, train_idx: np.ndarray, *, val_fraction: float, seed: int,
                     overlap: float = 0.0) -> tuple[np.ndarray, np.ndarray, str]:
    """(fit, validation, rule): by recording when every class keeps >= 3 training recordings.

    When every recording names its machine (synthetic data), the draw is by machine instead (every
    class keeping >= 3 training machines), so validation too measures unseen machines.
    With fewer (CWRU leaving a load out leaves two per class; its normal class is one recording cut
    in time), a recording-level draw would take half of a class's recordings away from training, so
    the validation side is instead the last ``val_fraction`` of each training recording's windows
    (they are in time order), with the windows that would share samples across the cut dropped.
    """
    by = default_split_key(data)
    unit = (np.array([data.recordings[g][by] for g in data.groups[train_idx]]) if by
            else data.groups[train_idx])
    per_class = [np.unique(unit[data.labels[train_idx] == c]).size for c in range(len(data.classes))]
    if min(c for c in per_class if c > 0) >= 3:
        fit_idx, val_idx = split_by_recording(data, test_fraction=val_fraction, seed=seed + 1, subset=train_idx,
                                              by=by)
        return fit_idx, val_idx, f"by {by or 'recording'}"
    if data.hop:  # windows closer than window_samples share samples across the cut
        gap = max(0, -(-data.windows.shape[1] // data.hop) - 1)
    else:
        gap = max(0, int(np.ceil(1.0 / (1.0 - overlap))) - 1)
    fit_parts, val_parts = [], []
    for group in np.unique(data.groups[train_idx]):
        rows = train_idx[data.groups[train_idx] == group]
        n_val = int(np.floor(val_fraction * rows.size))
        if n_val < 1 or rows.size - n_val - gap < 1:
            fit_parts.append(rows)
            continue
        val_parts.append(rows[rows.size - n_val:])
        fit_parts.append(rows[:rows.size - n_val - gap])
    empty = np.zeros(0, dtype=np.int64)
    return (np.concatenate(fit_parts) if fit_parts else empty, np.concatenate(val_parts) if val_parts else empty,
            f"last {val_fraction:.0%} of each training recording in time, {gap} overlapping window(s) dropped")


@dataclasses.dataclass
class TrainedModel:
    """What ``train_model`` returns: the model and what it was trained and validated on."""

    model: Any
    cfg: SpectrogramConfig
    """The DSP config with the normalisation fitted on the training side."""
    images: np.ndarray
    """Every window's normalised features (the model's input)."""
    fit_idx: np.ndarray
    val_idx: np.ndarray
    val_rule: str
    normalisation: str
    fit: FitResult
    windows_trained_on: int
    """Training windows the model saw: the fit side plus its augmented copies."""

    def verdict(self, data: WindowSet, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> guard.Verdict:
        """The degenerate-model guard on ``sets`` ({name: (true, predicted)}), with this training's
        history and validation side to name the likely cause (a validation recording also on the
        fit side, as in a split in time, does not count as an unseen one)."""
        fit_recs = set(np.unique(data.groups[self.fit_idx]).tolist())
        unseen = [g for g in np.unique(data.groups[self.val_idx]).tolist() if g not in fit_recs]
        per_class = {c: sum(1 for g in unseen if data.recordings[g]["class"] == c) for c in data.classes}
        return guard.assess(sets, data.classes, history=self.fit.history, best_epoch=self.fit.best_epoch,
                            validation_recordings=per_class, validation_rule=self.val_rule)


def train_model(data: WindowSet, train_idx: np.ndarray, raw: np.ndarray, cfg: SpectrogramConfig, *,
                arch: str, options: FitOptions, normalisation: str | None = None, val_fraction: float = 0.2,
                overlap: float = 0.0, n_test: int | None = None,
                augmentation: Augmentation | None = None) -> TrainedModel:
    """Train ``arch`` on the windows ``train_idx`` of ``data``: the one training step of `train` and `cv`.

    ``raw`` holds every window's un-normalised features (``feature_cache.raw_features``). A validation
    side is taken inside ``train_idx`` (``validation_split``), the normalisation is fitted on
    ``train_idx`` only (``normalisation`` None: the arch's default), ``augmentation`` (None: the
    default ``Augmentation()``) adds altered copies of the fit side's windows (never of the
    validation side), then ``edgecnn.fit`` trains with early stopping on the validation side.
    """
    from edgecnn.models import build_model

    normalisation = normalisation or default_normalisation(arch, cfg)
    if normalisation not in NORMALISATIONS:
        raise ConfigError(f"normalisation={normalisation!r} must be one of {NORMALISATIONS}")
    fit_idx, val_idx, val_rule = validation_split(data, train_idx, val_fraction=val_fraction, seed=options.seed,
                                                  overlap=overlap)
    if np.unique(data.labels[fit_idx]).size < 2:
        raise InputError("the training side holds a single class; add recordings or change the split")
    log(f"{len(data)} windows from {len(data.recordings)} recordings: train {len(fit_idx)}, "
        f"validation {len(val_idx)}" + ("" if n_test is None else f", test {n_test}") + " windows", options.quiet)
    if normalisation != "none":
        mean, std = dsp.fit_normalisation(raw[train_idx], per_bin=normalisation == "per_bin")
        cfg = cfg.with_normalisation(mean, std)
    images = normalise(raw, cfg)
    x_fit, y_fit = images[fit_idx], data.labels[fit_idx]
    augmentation = Augmentation() if augmentation is None else augmentation
    if augmentation.enabled:
        extra, origin = augment_training(data, fit_idx, augmentation, options.seed)
        x_fit = np.concatenate([x_fit, dsp.features(extra, cfg, progress=Progress("augmenting",
                                                                                  quiet=options.quiet))])
        y_fit = np.concatenate([y_fit, data.labels[origin]])
        log(f"augmentation: {len(extra)} altered copies of the {len(fit_idx)} training windows "
            f"(speed +-{augmentation.speed:.0%}, gain +-{augmentation.gain_db:g} dB, SNR "
            f"{augmentation.snr_db[0]:g}-{augmentation.snr_db[1]:g} dB)", options.quiet)
        del extra
    n_classes = len(data.classes)
    result = fit(lambda: build_model(arch, cfg.input_shape, n_classes), x_fit, y_fit,
                 images[val_idx], data.labels[val_idx], n_classes=n_classes, options=options)
    return TrainedModel(model=result.model, cfg=cfg, images=images, fit_idx=fit_idx, val_idx=val_idx,
                        val_rule=val_rule, normalisation=normalisation, fit=result,
                        windows_trained_on=int(len(y_fit)))


def default_split_key(data: WindowSet) -> str | None:
    """``machine`` when every recording names its machine (synthetic data): splits then keep a
    machine's recordings together, so held-out accuracy is that on unseen machines; else None."""
    return "machine" if has_metadata(data, "machine") else None


def check_out(out: str | Path, force: bool) -> Path:
    out = Path(out)
    if out.exists() and not force:
        raise ConfigError(f"--out {out} already exists; choose another folder or pass --force to replace it")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder; remove it or choose another path")
    return out


def train_run(data: WindowSet, cfg: SpectrogramConfig | None = None, *, out: str | Path, arch: str = "edge",
              epochs: int = 60, batch_size: int = 32, seed: int = 0, label_map: str | None = None,
              test_where: dict[str, Any] | None = None, test_fraction: float = 0.25,
              val_fraction: float = 0.2, normalisation: str | None = None, strategy: str = "none",
              mixed_precision: bool = False, quiet: bool = False, force: bool = False,
              cache_dir: str | Path | None = None, use_cache: bool = True, learning_rate: float = 1e-3,
              patience: int = 12, min_epochs: int = 10, data_source: str | None = None,
              overlap: float = 0.0, augmentation: Augmentation | None = None,
              cv_by: str | None = None, cv: bool = True) -> TrainResult:
    """Train ``arch`` on ``data`` and write a run directory at ``out``; returns what it wrote.

    ``augmentation`` adds altered copies of the training windows (never of validation or test
    windows; ``Augmentation(copies=0)`` turns it off).

    ``overlap`` is the window overlap ``data`` was cut with, used only when ``data.hop`` is unknown
    (it sizes the gap of a time-based validation split, see ``validation_split``).

    ``test_fraction=0`` (without ``test_where``) trains on every recording: there is no test set,
    and unless ``cv`` is False a cross-validation with the same settings (leave one ``cv_by`` group
    out, by recording when None; this run's seed) estimates in its place what the held-out accuracy
    would be; it is written to RUN_DIR/cv/ and metrics.json's ``estimate``.
    metrics.json also carries the degenerate-model guard's verdict (``edgecnn.guard``).
    """
    from edgecnn.models import count_params_macs

    if not isinstance(data, WindowSet):
        raise InputError(f"train_run needs a WindowSet (edgecnn.dataset.load_windows), got {type(data).__name__}")
    cfg = cfg or default_config(arch)
    if cfg.is_normalised:
        cfg = cfg.replace(norm_mean=(0.0,), norm_std=(1.0,))  # refitted by train_model, on this training split
    if data.windows.shape[1] != cfg.window_samples:
        raise InputError(f"windows have {data.windows.shape[1]} samples; the config needs {cfg.window_samples}")
    augmentation = Augmentation() if augmentation is None else augmentation
    out = check_out(out, force)
    options = FitOptions(epochs=epochs, batch_size=batch_size, seed=seed, learning_rate=learning_rate,
                         patience=patience, min_epochs=min_epochs, strategy=strategy,
                         mixed_precision=mixed_precision, quiet=quiet)

    everything = test_fraction == 0 and not test_where
    if everything:
        train_idx, test_idx = np.arange(len(data)), np.zeros(0, dtype=np.int64)
    else:
        train_idx, test_idx = split_by_recording(data, test_fraction=test_fraction, seed=seed, where=test_where,
                                                 by=None if test_where else default_split_key(data))
    raw, cached = raw_features(data.windows, cfg, cache_dir=cache_dir, use_cache=use_cache,
                               progress=Progress("spectrograms", quiet=quiet))
    log(f"spectrograms {'from cache' if cached else 'computed'}: {raw.shape[1]}x{raw.shape[2]} "
        f"({cfg.transform})", quiet)
    estimate, cv_doc = None, None
    if everything:
        estimate, cv_doc = _estimate(data, cfg, raw, cv=cv, by=cv_by, arch=arch, options=options,
                                     normalisation=normalisation, val_fraction=val_fraction, overlap=overlap,
                                     data_source=data_source, label_map=label_map, augmentation=augmentation)
    trained = train_model(data, train_idx, raw, cfg, arch=arch, options=options, normalisation=normalisation,
                          val_fraction=val_fraction, overlap=overlap, n_test=len(test_idx),
                          augmentation=augmentation)
    cfg, images, result, model = trained.cfg, trained.images, trained.fit, trained.model
    fit_idx, val_idx, val_rule = trained.fit_idx, trained.val_idx, trained.val_rule
    normalisation = trained.normalisation
    footprint = count_params_macs(model)

    probs = predict(model, images[test_idx])
    rec_ids = [r["id"] for r in data.recordings]
    report = classification_report(data.labels[test_idx], probs.argmax(axis=1), data.classes,
                                   groups=data.groups[test_idx], recording_ids=rec_ids)
    val_pred = predict(model, images[val_idx]).argmax(axis=1)
    sets = {"validation": (data.labels[val_idx], val_pred)}
    if len(test_idx):
        sets["test"] = (data.labels[test_idx], probs.argmax(axis=1))
    verdict = trained.verdict(data, sets)
    metrics = {"test": report if len(test_idx) else None,
               "validation_accuracy": float(np.mean(val_pred == data.labels[val_idx])) if len(val_idx) else None,
               "arch": arch, **footprint, "seconds_per_epoch": result.seconds_per_epoch,
               **verdict.to_json()}
    if everything:
        metrics["estimate"] = estimate
    if len(test_idx):
        log(f"test accuracy {report['accuracy']:.4f} on {report['n']} windows; "
            f"{footprint['params']} parameters, {footprint['macs']} MACs", quiet)

    target = out if result.is_chief else _worker_out(out)
    split = {"seed": seed, "test_fraction": None if test_where else test_fraction,
             "by": None if test_where else default_split_key(data) or "recording",
             "test_where": test_where, "val_fraction": val_fraction, "validation_rule": val_rule,
             "train": data.recording_ids(fit_idx), "validation": data.recording_ids(val_idx),
             "test": data.recording_ids(test_idx),
             "windows": {"train": int(len(fit_idx)), "validation": int(len(val_idx)),
                         "test": int(len(test_idx))}}
    config = rundir.config_document(
        cfg, data.classes, label_map=label_map, arch=arch, seed=seed,
        data={**data.summary(), "source": data_source, "recordings": len(data.recordings)},
        training={"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                  "patience": patience, "min_epochs": min_epochs, "strategy": strategy,
                  "mixed_precision": mixed_precision,
                  "normalisation": normalisation, "augmentation": augmentation.to_dict(),
                  "windows_trained_on": trained.windows_trained_on, "devices": result.devices,
                  "replicas": result.replicas},
        footprint=footprint, tool_versions=tool_versions())
    history = {**result.history, "best_epoch": result.best_epoch, "selection": result.selection,
               "seconds_per_epoch": result.seconds_per_epoch}
    calib = stratified_sample(data.labels[train_idx], CALIBRATION_WINDOWS, seed)
    _write_run(target, force=True if not result.is_chief else force, model=model, config=config, split=split,
               history=history, metrics=metrics,
               calibration=(data.windows[train_idx][calib], data.labels[train_idx][calib]),
               plots=lambda folder: _plots(folder, raw, images, probs, data, train_idx, test_idx, cfg,
                                           history, report, seed, cv_doc))
    log(f"wrote {target}", quiet)
    return TrainResult(out=target, cfg=cfg, metrics=metrics, history=result.history, footprint=footprint,
                       seconds_per_epoch=result.seconds_per_epoch, model=model)


def _worker_out(out: Path) -> Path:
    """Where a non-chief multi-worker process keeps its copy (beside the chief's, never over it)."""
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return out.with_name(f"{out.name}.{task.get('type', 'worker')}{task.get('index', 0)}")


def _estimate(data: WindowSet, cfg: SpectrogramConfig, raw: np.ndarray, *, cv: bool, by: str | None, arch: str,
              options: FitOptions, normalisation, val_fraction, overlap, data_source, label_map,
              augmentation: Augmentation | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """metrics.json's ``estimate`` for a run trained on every recording, and the cv document behind it."""
    if not cv:
        return {"available": False,
                "reason": "every recording was used for training (--test-fraction 0) and cross-validation "
                          "was turned off (--no-cv): no held-out estimate exists"}, None
    from edgecnn.cv import CV_FILE, cross_validate, summary_line

    by = by or default_split_key(data) or "recording"
    log(f"no test set (test fraction 0): estimating held-out accuracy by cross-validation, leave one {by} out",
        options.quiet)
    doc = cross_validate(data, cfg, by=by, seeds=(options.seed,), arch=arch, options=options,
                         normalisation=normalisation, val_fraction=val_fraction, overlap=overlap, raw=raw,
                         quiet=options.quiet, data_source=data_source, label_map=label_map,
                         augmentation=augmentation)
    summary = doc["summary"]
    return {"available": True, "method": f"cross-validation, leave one {by} out", "by": by,
            "folds": len(doc["folds"]), "seeds": doc["seeds"], "float_accuracy": summary["float"]["mean"],
            "int8_accuracy": summary["int8"]["mean"], "worst_recording": summary["worst_recording"],
            "degenerate": summary["degenerate"], "file": f"cv/{CV_FILE}", "summary": summary_line(doc)}, doc


def _plots(folder: Path, raw, images, probs, data: WindowSet, train_idx, test_idx, cfg, history, report,
           seed: int, cv_doc: dict[str, Any] | None = None) -> None:
    from edgecnn import plots

    if cv_doc is not None:
        from edgecnn.cv import write_outputs

        write_outputs(cv_doc, folder / "cv")
    plots.plot_training_curves(history, folder / "training_curves.png", best_epoch=history.get("best_epoch"))
    if len(test_idx):
        plots.plot_confusion(report["confusion_matrix"], data.classes, folder / "confusion_matrix.png")
    shown = cfg.replace(norm_mean=(0.0,), norm_std=(1.0,))
    plots.plot_example_spectrograms(raw[train_idx], data.labels[train_idx], data.classes, shown,
                                    folder / "example_spectrograms.png")
    if len(test_idx):
        # The reference notebook's last figure: one test window (of the last class, e.g. the fault).
        rng = np.random.default_rng(seed)
        wanted = np.flatnonzero(data.labels[test_idx] == data.labels[test_idx].max())
        pick = int(rng.choice(wanted))
        plots.plot_prediction(images[test_idx][pick], probs[pick], data.classes, cfg,
                              folder / "test_prediction.png",
                              true_class=data.classes[int(data.labels[test_idx][pick])])


def _write_run(out: Path, *, force: bool, model, config, split, history, metrics, calibration, plots) -> None:
    """Build the run in a hidden sibling folder, then rename it into place (replacing only with force)."""
    out = check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        model.save(tmp / rundir.MODEL_FILE)
        write_json(tmp / rundir.CONFIG_FILE, config)
        write_json(tmp / "split.json", split)
        write_json(tmp / "history.json", history)
        write_json(tmp / "metrics.json", metrics)
        windows, labels = calibration
        np.savez(tmp / rundir.CALIBRATION_FILE, windows=np.asarray(windows, dtype=np.float32),
                 labels=np.asarray(labels, dtype=np.int64))
        plots(tmp)
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


__all__ = ["TrainResult", "TrainedModel", "default_config", "is_chief", "stratified_sample", "train_model",
           "train_run"]
