"""The run directory: what ``edgecnn train`` writes and ``edgecnn export`` / ``parity`` read.

Layout (format ``edgecnn-run``, version 1)::

    RUN_DIR/model.keras        Keras model: input (n_freq, n_frames, 1) float32 *normalised* features,
                               output (n_classes,) softmax probabilities
    RUN_DIR/config.json        {"format", "version", "dsp": SpectrogramConfig.to_dict() (with the
                               normalisation fitted on the training split), "classes", "label_map",
                               "arch", "seed", "data": {...summary...}, "tool_versions": {...}}
    RUN_DIR/calibration.npz    ``windows`` (M, window_samples) float32 raw samples at dsp.fs and
                               ``labels`` (M,) int: a stratified sample of *training* windows, used
                               to calibrate int8 export and for golden vectors
    RUN_DIR/split.json         which recordings went to train / validation / test
    RUN_DIR/validation.npz     the model's probabilities on the validation windows, in recording and
                               time order (``probabilities`` (V, C) float32, ``labels``, ``groups``,
                               ``recording_ids``, ``window_step``): export chooses the decision policy
                               from them (export/decision_policy.py)
    RUN_DIR/history.json, metrics.json, *.png

This module reads and writes the small files only; it imports no TensorFlow (``load_keras_model``
imports Keras inside the call).
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.config import SpectrogramConfig
from edgecnn.errors import ConfigError, InputError

RUN_FORMAT = "edgecnn-run"
RUN_VERSION = 1
MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
CALIBRATION_FILE = "calibration.npz"
VALIDATION_FILE = "validation.npz"


@dataclasses.dataclass(frozen=True)
class RunInfo:
    """What a consumer of a run directory needs, read from its files."""

    path: Path
    cfg: SpectrogramConfig
    classes: list[str]
    config: dict[str, Any]

    @property
    def model_path(self) -> Path:
        return self.path / MODEL_FILE

    def calibration(self) -> tuple[np.ndarray, np.ndarray]:
        """The stored training windows (M, window_samples) float32 and their labels (M,)."""
        path = self.path / CALIBRATION_FILE
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["windows"].astype(np.float32), data["labels"].astype(np.int64)
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign file is bad input (BadZipFile, EOFError...)
            raise InputError(f"{path}: cannot read calibration windows ({type(exc).__name__}: {exc})") from None

    def validation(self) -> dict[str, np.ndarray] | None:
        """The validation probabilities (see the module docstring), or None for a run without them."""
        path = self.path / VALIDATION_FILE
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                out = {key: data[key] for key in ("probabilities", "labels", "groups", "recording_ids",
                                                  "window_step")}
        except Exception as exc:  # noqa: BLE001 - a truncated or foreign file is bad input
            raise InputError(f"{path}: cannot read validation probabilities ({type(exc).__name__}: {exc})") from None
        n = len(out["labels"])
        if out["probabilities"].shape != (n, len(self.classes)) or len(out["groups"]) != n:
            raise InputError(f"{path}: probabilities {out['probabilities'].shape}, {n} labels and "
                             f"{len(out['groups'])} groups do not match {len(self.classes)} classes")
        return out

    def split(self) -> dict[str, Any] | None:
        path = self.path / "split.json"
        return json.loads(path.read_text()) if path.exists() else None


def load_keras_model(path: str | Path):
    """The Keras model at ``path`` (imports Keras here, never at module level); InputError when the
    file is missing, truncated or not a Keras model."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: model file is missing")
    if not zipfile.is_zipfile(path):  # Keras would say "File not found" about a truncated archive
        raise InputError(f"{path}: not a loadable Keras model (not a .keras zip archive: truncated or "
                         f"another format)")
    from edgecnn.quiet import import_tensorflow

    import_tensorflow()  # its C++ start-up lines kept off stderr
    import keras

    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # noqa: BLE001 - any loader failure on a damaged file is bad input
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{path}: not a loadable Keras model ({type(exc).__name__}: {reason[:200]})") from None


def config_document(cfg: SpectrogramConfig, classes: list[str], **extra: Any) -> dict[str, Any]:
    """The ``config.json`` content for a run."""
    return {"format": RUN_FORMAT, "version": RUN_VERSION, "dsp": cfg.to_dict(), "classes": list(classes),
            **extra}


def read_run(path: str | Path) -> RunInfo:
    """Open a run directory; refuses anything that is not a complete edgecnn run."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: not a run directory (run `edgecnn train ... --out {path}` first)")
    cfg_path = path / CONFIG_FILE
    try:
        config = json.loads(cfg_path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: no {CONFIG_FILE}; not an edgecnn run directory") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{cfg_path}: not valid JSON ({exc})") from None
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT:
        raise InputError(f"{cfg_path}: format is not {RUN_FORMAT!r}")
    if config.get("version") != RUN_VERSION:
        raise InputError(f"{cfg_path}: run version {config.get('version')!r} unknown (expected {RUN_VERSION})")
    try:
        cfg = SpectrogramConfig.from_dict(config["dsp"])
    except KeyError:
        raise InputError(f"{cfg_path}: no 'dsp' section") from None
    except ConfigError as exc:
        raise InputError(f"{cfg_path}: {exc}") from None
    classes = config.get("classes")
    if not isinstance(classes, list) or len(classes) < 2:
        raise InputError(f"{cfg_path}: 'classes' must list at least two class names")
    if not (path / MODEL_FILE).is_file():
        raise InputError(f"{path}: {MODEL_FILE} is missing; the run is incomplete")
    return RunInfo(path=path, cfg=cfg, classes=[str(c) for c in classes], config=config)


def validation_record(probabilities: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                      recording_ids: list[str], window_step: int) -> dict[str, np.ndarray]:
    """The arrays of ``validation.npz``: validation windows in recording and time order."""
    return {"probabilities": np.asarray(probabilities, dtype=np.float32),
            "labels": np.asarray(labels, dtype=np.int64), "groups": np.asarray(groups, dtype=np.int64),
            "recording_ids": np.asarray([str(r) for r in recording_ids]),
            "window_step": np.asarray(int(window_step), dtype=np.int64)}
