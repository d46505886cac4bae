"""Golden vectors: a few fixed windows with every stage's expected output, for checking a device.

Stages: raw samples -> magnitude spectrogram -> features (transform + normalisation) -> int8 input
tensor (the manifest's scale and zero point) -> int8 output -> probabilities. A device
implementation feeds ``windows`` and compares each stage.

The int8 outputs come from tflite-micro's Python runtime: the kernels a microcontroller runs (its
reference kernels; CMSIS-NN gives the same bytes, measured on QEMU by tests/test_firmware_mcu.py).
LiteRT's default path (XNNPACK) differs from every MCU runtime by up to 2 LSB, so golden outputs
meant for firmware never come from it.

TF-free: numpy, edgecnn.dsp and tflite_micro.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn import dsp
from edgecnn.config import SpectrogramConfig
from export.bundle import TensorSpec

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
    output_q = run_tflm(int8_model, input_q)
    return {
        "windows": windows,
        "labels": np.asarray(labels, dtype=np.int64),
        "magnitude": magnitude,
        "features": features,
        "input_int8": input_q,
        "output_int8": output_q,
        "probabilities": output_spec.dequantize(output_q),
    }


def run_tflm(model_path: str | Path, inputs: np.ndarray) -> np.ndarray:
    """Run an int8 .tflite on each int8 input (batch 1 each) with tflite-micro; outputs stacked."""
    from tflite_micro import runtime

    interpreter = runtime.Interpreter.from_file(str(model_path))
    results = []
    for x in inputs:
        interpreter.set_input(np.asarray(x)[None], 0)
        interpreter.invoke()
        results.append(np.array(interpreter.get_output(0))[0])
    return np.stack(results)
