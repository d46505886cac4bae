"""Golden vectors: a few fixed windows with every stage's expected output, for checking a device.

Stages: raw samples -> magnitude spectrogram -> features (transform + normalisation) -> int8 input
tensor (the manifest's scale and zero point) -> int8 output (LiteRT) -> probabilities. A device
implementation feeds ``windows`` and compares each stage.

TF-free: numpy, edgecnn.dsp and ai_edge_litert.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn import dsp
from edgecnn.config import SpectrogramConfig
from export.bundle import TensorSpec
from export.tflite_export import run_litert

#: Golden windows per class: few enough that golden.npz stays small (~100 kB per window).
PER_CLASS = 2


def select_golden(labels: np.ndarray, *, per_class: int = PER_CLASS) -> np.ndarray:
    """Indices of the first ``per_class`` windows of each class, in class order (deterministic)."""
    labels = np.asarray(labels)
    picked = [np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]
    return np.concatenate(picked).astype(np.int64)


def golden_vectors(windows: np.ndarray, labels: np.ndarray, cfg: SpectrogramConfig, int8_model: Path,
                   input_spec: TensorSpec, output_spec: TensorSpec) -> dict[str, np.ndarray]:
    """Every stage's output for ``windows`` (N, window_samples), as saved in golden.npz."""
    windows = np.asarray(windows, dtype=np.float32)
    magnitude = dsp.magnitude_image(windows, cfg).astype(np.float32)
    features = dsp.features(windows, cfg)
    input_q = input_spec.quantize(features)
    output_q = run_litert(int8_model, input_q)
    return {
        "windows": windows,
        "labels": np.asarray(labels, dtype=np.int64),
        "magnitude": magnitude,
        "features": features,
        "input_int8": input_q,
        "output_int8": output_q,
        "probabilities": output_spec.dequantize(output_q),
    }
