"""Golden vectors: a few fixed windows with every stage's expected output, for checking a device.

Stages: raw samples -> magnitude spectrogram -> features (transform + normalisation) -> int8 input
tensor (the manifest's scale and zero point) -> int8 output -> probabilities. A device
implementation feeds ``windows`` and compares each stage.

The int8 outputs come from tflite-micro's Python runtime: the kernels a microcontroller runs (its
reference kernels; CMSIS-NN gives the same bytes, measured on QEMU by tests/test_firmware_mcu.py).
LiteRT's default path (XNNPACK) differs from every MCU runtime by up to 2 LSB, so golden outputs
meant for firmware never come from it.

The q15 DSP path (``q15_golden_vectors`` -> ``golden_q15.npz``, when the device declares
``cmsis-q15``): for a few windows the ADC samples (int16), and for one frame every integer stage of
the ``cmsis-q15`` backend (shift, q15 frame, windowed frame, ``arm_rfft_q15`` spectrum,
``arm_cmplx_mag_q15`` magnitude), the physical magnitudes, the feature column and, given the model's
input quantisation, the int8 input column; with the config and ADC as JSON. Written atomically
(``write_golden_vectors``); ``check_golden_vectors`` recomputes a file from its own ADC samples.

TF-free: numpy, edgecnn.dsp, tflite_micro and the device side's ADC and DSP backends (cmsisdsp).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from edgecnn import dsp
from edgecnn.config import SpectrogramConfig
from edgecnn.dsp import transform_magnitudes
from edgecnn.errors import ConfigError, InputError
from export.bundle import TensorSpec, quantize
from firmware_sim.adc import ADC
from firmware_sim.dsp_backends import Q15Backend

#: Golden windows per class: few enough that golden.npz stays small (~100 kB per window).
PER_CLASS = 2
#: The q15 golden file's format name and version.
GOLDEN_FORMAT = "edgecnn-q15-golden"
GOLDEN_VERSION = 1


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


# --- the q15 DSP path --------------------------------------------------------------------------------
def q15_golden_vectors(windows: np.ndarray, cfg: SpectrogramConfig, adc: ADC | None = None, *,
                   frame: int = 0, block_floating_point: bool = True,
                   input_quantization: tuple[float, int] | None = None) -> dict[str, np.ndarray]:
    """Every integer stage of frame ``frame`` of each window, plus its feature column.

    ``windows`` (W, L) are physical units (or int16 counts). The dict holds the ADC samples of
    the whole windows and, per window, the shift, q15 frame stages, q15 spectrum and magnitude,
    the physical magnitudes, the feature column (``cfg``'s transform and normalisation) and,
    given ``input_quantization=(scale, zero_point)``, the int8 model input column.
    """
    backend = Q15Backend(adc, block_floating_point=block_floating_point)
    windows = np.asarray(windows)
    if windows.ndim == 1:
        windows = windows[None, :]
    counts = backend.counts(windows)
    if not 0 <= frame < 1 + (counts.shape[1] - cfg.nperseg) // cfg.hop:
        raise InputError(f"frame={frame} is outside the {counts.shape[1]}-sample windows")
    start = frame * cfg.hop
    stages = backend.stages(counts[:, start:start + cfg.nperseg], cfg)
    magnitudes = backend.to_units(stages, cfg)
    features = transform_magnitudes(magnitudes, cfg, freq_axis=-1)
    out = {
        "format": np.array(GOLDEN_FORMAT), "version": np.array(GOLDEN_VERSION),
        "config_json": np.array(cfg.to_json()),
        "adc_json": np.array(json.dumps(backend.adc.to_dict(), sort_keys=True)),
        "block_floating_point": np.array(backend.block_floating_point),
        "frame_index": np.array(frame), "adc_samples": counts,
        "window_q15": backend.window_q15(cfg),
        "shift": stages.shift,
        "frame_q15": stages.scaled,
        "windowed_q15": stages.windowed,
        "spectrum_q15": stages.spectrum,
        "magnitude_q15": stages.magnitude,
        "magnitude": magnitudes.astype(np.float32),
        "feature": features,
    }
    if input_quantization is not None:
        scale, zero_point = input_quantization
        if not scale > 0:
            raise ConfigError(f"input quantisation scale={scale!r} must be > 0")
        out["input_int8"] = quantize(features, scale, int(zero_point), "int8")  # the one input quantiser
        out["input_scale"] = np.array(float(scale))
        out["input_zero_point"] = np.array(int(zero_point))
    return out


def write_golden_vectors(path: str | Path, vectors: dict[str, np.ndarray]) -> Path:
    """Save golden vectors to ``path`` (.npz) atomically: a temp file in the folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **vectors)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(buffer.getvalue())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def check_golden_vectors(path: str | Path) -> list[str]:
    """Recompute a golden-vector file from its own ADC samples; returns the names that differ.

    Integer stages must match exactly; magnitudes and features to float32 rounding.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read golden vectors {path}: {exc}") from None
    if str(stored.get("format", "")) != GOLDEN_FORMAT or int(stored.get("version", -1)) != GOLDEN_VERSION:
        raise InputError(f"{path} is not an {GOLDEN_FORMAT} v{GOLDEN_VERSION} file")
    cfg = SpectrogramConfig.from_json(str(stored["config_json"]))
    adc = ADC.from_dict(json.loads(str(stored["adc_json"])))
    quant = None
    if "input_scale" in stored:
        quant = (float(stored["input_scale"]), int(stored["input_zero_point"]))
    fresh = q15_golden_vectors(stored["adc_samples"], cfg, adc, frame=int(stored["frame_index"]),
                           block_floating_point=bool(stored["block_floating_point"]),
                           input_quantization=quant)
    bad = []
    for key, value in stored.items():
        other = fresh.get(key)
        if other is None or np.shape(other) != np.shape(value):
            bad.append(key)
        elif np.issubdtype(np.asarray(value).dtype, np.floating):
            if not np.allclose(value, other, rtol=1e-6, atol=0):
                bad.append(key)
        elif not np.array_equal(value, other):
            bad.append(key)
    return bad
