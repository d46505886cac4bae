"""Fidelity: what each DSP backend does to the features and to the int8 model's decisions.

For the test windows of a bundle's run (``edgecnn.parity.select_data``) and each DSP backend
(``numpy``, ``cmsis-f32``, ``cmsis-q15``, each behind the device's ADC as the bundle declares it):

- per frame, the backend's magnitudes against the float definition of the *unquantised* windows
  (SNR in dB: worst, 5th percentile, median, pooled; max relative error), so ADC quantisation
  counts as error, as it does on a device;
- the bundle's int8 model fed with that backend's features: accuracy, agreement with the float
  pipeline (float definition + float32 model; the int8 model when the bundle has no float one)
  and agreement with the int8 model on the float definition's features (the DSP's own effect);
- the q15 path's SNR against the signal level (windows scaled to -40 .. 0 dBFS) and its error
  budget stage by stage, and where its arithmetic is integer and where it is not.

TF-free: numpy, cmsisdsp and the bundle's interpreters (firmware_sim); the report never imports
TensorFlow, so it runs where the device side runs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.dsp import transform_magnitudes
from edgecnn.errors import InputError
from edgecnn.parity import ParityData, run_variant

#: Backends the report evaluates by default, in report order.
DEFAULT_BACKENDS = ("numpy", "cmsis-f32", "cmsis-q15")
#: Peak levels (dBFS) of the q15 SNR curve.
CURVE_LEVELS_DB = tuple(range(-40, 1, 5))
#: Windows the SNR curve and the error budget use (spread over the test windows and classes).
CURVE_WINDOWS = 16

#: Where the q15 path is integer arithmetic and where it is not, and why (docs/dsp_backends.md).
Q15_ARITHMETIC = (
    {"stage": "ADC samples", "arithmetic": "integer", "detail": "int16 counts"},
    {"stage": "mean removal + block-floating-point shift", "arithmetic": "integer",
     "detail": "int32 N*x - sum(x), exponent s from the peak (CLZ), one rounding shift to q15"},
    {"stage": "window", "arithmetic": "integer", "detail": "arm_mult_q15 by the q15 window table"},
    {"stage": "FFT", "arithmetic": "integer", "detail": "arm_rfft_q15 (output X / N)"},
    {"stage": "magnitude", "arithmetic": "integer",
     "detail": "arm_cmplx_mag_q15 (2.14); DC bin from the exact int32 sum"},
    {"stage": "back to units", "arithmetic": "float",
     "detail": "one multiply per bin by (2m+1) * lsb * N / (2**s * sum(window)): the per-frame exponent s "
               "makes the scale different in every frame"},
    {"stage": "feature transform + normalisation", "arithmetic": "float",
     "detail": "log10 (log transform) and per-bin (x - mean) / std: an integer version needs a per-bin "
               "fixed-point multiplier and shift with s folded in, plus a log2 table; 129 float "
               "multiply-adds per frame cost nothing measurable on a Cortex-M4F"},
    {"stage": "int8 input quantisation", "arithmetic": "float -> int8",
     "detail": "round(x / scale) + zero_point with the model's input scale (as TFLite's Quantize)"},
)


@dataclasses.dataclass
class BackendRun:
    """One backend over the evaluated windows: its device, magnitudes, features and counters."""

    device: Any
    """``firmware_sim.dsp_backends.DeviceDSP``."""
    magnitudes: np.ndarray
    """(N, n_freq, n_frames) float64, physical units."""
    images: np.ndarray
    """(N, n_freq, n_frames, 1) float32 model input."""
    adc_samples: int
    adc_saturated: int
    seconds: float


def backend_images(windows: np.ndarray, cfg, device) -> BackendRun:
    """Features of ``windows`` (N, L) through one device's ADC and DSP backend, as a device computes them."""
    from firmware_sim.dsp_backends import backend_spectrogram

    backend = device.backend()
    start = time.perf_counter()
    magnitudes = backend_spectrogram(np.asarray(windows), cfg, backend)
    images = transform_magnitudes(magnitudes, cfg)[..., None]
    adc = getattr(backend, "adc", None)
    return BackendRun(device=device, magnitudes=magnitudes, images=images,
                      adc_samples=adc.samples if adc is not None else 0,
                      adc_saturated=adc.saturated if adc is not None else 0,
                      seconds=time.perf_counter() - start)


def _frames(magnitudes: np.ndarray) -> np.ndarray:
    """(N, n_freq, n_frames) -> (N * n_frames, n_freq): one row per frame."""
    return np.swapaxes(magnitudes, -1, -2).reshape(-1, magnitudes.shape[-2])


def curve_windows(data: ParityData, n: int = CURVE_WINDOWS) -> np.ndarray:
    """Up to ``n`` test windows spread evenly over the set (both ends included), deterministic."""
    total = len(data.labels)
    idx = np.unique(np.linspace(0, total - 1, num=min(n, total)).round().astype(int))
    return data.windows.windows[idx]


def evaluate(bundle, data: ParityData, *, backends: Iterable[str] = DEFAULT_BACKENDS, runtime: str = "litert",
             curve: bool = True, curve_levels: Iterable[float] = CURVE_LEVELS_DB, n_curve: int = CURVE_WINDOWS,
             say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The whole report as a JSON-ready dict (see the module docstring)."""
    from firmware_sim.dsp_backends import BACKENDS, DeviceDSP, NumpyBackend, backend_spectrogram
    from firmware_sim.dsp_fidelity import compare_frames, q15_error_budget, snr_curve

    say = say or (lambda message: None)
    names = list(dict.fromkeys(backends))
    unknown = [n for n in names if n not in BACKENDS]
    if unknown or not names:
        raise InputError(f"unknown DSP backends {unknown or names}; choose from {', '.join(BACKENDS)}")
    cfg, labels, windows = bundle.cfg, data.labels, data.windows.windows
    if cfg.feature != "spectrogram":
        raise InputError(f"{bundle.path}: the fidelity report compares the microcontroller's spectrogram DSP; "
                         f"this bundle's feature is {cfg.feature!r}, which runs on the float (numpy) path only")
    if len(labels) == 0:
        raise InputError("no test windows to evaluate")
    present = {(e.format, e.dtype) for e in bundle.models.values()}
    if ("tflite", "int8") not in present:
        raise InputError(f"{bundle.path}: the fidelity report needs the bundle's int8 TFLite model")

    say(f"float definition on {len(labels)} windows")
    # The same float32 windows every backend sees (the data layer's windows), through the float definition.
    reference = backend_spectrogram(np.asarray(windows), cfg, NumpyBackend())
    reference_images = transform_magnitudes(reference, cfg)[..., None]
    int8_float_features = run_variant(bundle, runtime, "int8", reference_images).argmax(axis=1)
    if ("tflite", "float32") in present:
        float_pipeline = run_variant(bundle, runtime, "float32", reference_images).argmax(axis=1)
        float_name = "float definition + float32 TFLite"
    else:
        float_pipeline, float_name = int8_float_features, "float definition + int8 TFLite"

    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        device = DeviceDSP.resolve(bundle.device, name)
        say(f"{name}: features of {len(labels)} windows")
        run = backend_images(windows, cfg, device)
        predicted = run_variant(bundle, runtime, "int8", run.images).argmax(axis=1)
        frames = compare_frames(_frames(run.magnitudes), _frames(reference), name).to_dict()
        rows[name] = {
            "device": device.to_dict(),
            "frames": frames,
            "adc": {"samples": run.adc_samples, "saturated": run.adc_saturated},
            "int8_accuracy": float(np.mean(predicted == labels)),
            "agreement_with_float_pipeline": float(np.mean(predicted == float_pipeline)),
            "agreement_with_int8_on_float_features": float(np.mean(predicted == int8_float_features)),
            "feature_max_abs_error": float(np.max(np.abs(run.images - reference_images))),
            "dsp_seconds": round(run.seconds, 3),
        }
    out: dict[str, Any] = {
        "bundle": str(bundle.path), "selection": data.selection, "n_windows": int(len(labels)),
        "frames_per_window": int(cfg.n_frames), "runtime": runtime,
        "declared_device": bundle.device,
        "float_pipeline": {"name": float_name, "accuracy": float(np.mean(float_pipeline == labels))},
        "int8_on_float_features": {"accuracy": float(np.mean(int8_float_features == labels)),
                                   "agreement_with_float_pipeline":
                                       float(np.mean(int8_float_features == float_pipeline))},
        "backends": rows,
        "q15_arithmetic": list(Q15_ARITHMETIC),
    }
    if curve:
        q15 = DeviceDSP.resolve(bundle.device, "cmsis-q15")
        subset = curve_windows(data, n_curve)
        say(f"q15 SNR curve on {len(subset)} windows")
        levels = list(curve_levels)
        points = snr_curve(subset, cfg, levels_db=levels, adc=q15.adc)
        out["q15_snr_curve"] = {"windows": int(len(subset)), "adc": q15.adc.to_dict(),
                                "points": [{"level_dbfs": float(lv), **p.to_dict()} for lv, p in zip(levels, points)]}
        budget = q15_error_budget(subset, cfg, q15.adc)
        out["q15_error_budget"] = {"windows": int(len(subset)), "level": "the data's own level",
                                   "stages": [b.to_dict() for b in budget]}
    return out


def format_report(result: dict[str, Any]) -> str:
    """The report as text: one row per backend, then the q15 curve and arithmetic."""
    fp, i8 = result["float_pipeline"], result["int8_on_float_features"]
    lines = [f"fidelity of {result['bundle']} on {result['n_windows']} windows ({result['selection']})",
             f"float pipeline ({fp['name']}): accuracy {fp['accuracy']:.4f}; int8 on the float definition's "
             f"features: accuracy {i8['accuracy']:.4f}, agreement {i8['agreement_with_float_pipeline']:.4f}",
             f"  {'backend':<10} {'ADC':<18} {'frames':>7} {'SNR min':>8} {'p05':>6} {'median':>7} "
             f"{'max rel':>8} {'clipped':>8} {'int8 acc':>8} {'agree':>7} {'agree i8':>8}"]
    for name, row in result["backends"].items():
        f, adc = row["frames"], row["device"]["adc"]
        adc_text = f"+/-{adc['full_scale']:g} {adc['units']} {adc['bits']}b" if adc else "none (float)"
        lines.append(
            f"  {name:<10} {adc_text:<18} {f['frames']:>7} {_db(f['snr_db_min']):>8} {_db(f['snr_db_p05']):>6} "
            f"{_db(f['snr_db_median']):>7} {f['max_rel_error']:8.1e} {row['adc']['saturated']:>8} "
            f"{row['int8_accuracy']:8.4f} {row['agreement_with_float_pipeline']:7.4f} "
            f"{row['agreement_with_int8_on_float_features']:8.4f}")
    lines.append("  (SNR in dB per frame against the float definition of the unquantised windows; agree = with "
                 "the float pipeline; agree i8 = with the int8 model on the float definition's features)")
    curve = result.get("q15_snr_curve")
    if curve:
        lines.append(f"q15 SNR vs level ({curve['windows']} windows scaled to each peak level):")
        lines.append("  dBFS  " + " ".join(f"{p['level_dbfs']:>6g}" for p in curve["points"]))
        lines.append("  worst " + " ".join(f"{p['snr_db_min']:6.1f}" for p in curve["points"]))
        lines.append("  median" + " ".join(f"{p['snr_db_median']:7.1f}"[1:] for p in curve["points"]))
    budget = result.get("q15_error_budget")
    if budget:
        lines.append("q15 error budget at the data's own level (pooled SNR after each integer stage):")
        lines.extend(f"  {b['backend']:<14} {b['snr_db_pooled']:6.1f} dB" for b in budget["stages"])
    lines.append("q15 arithmetic: " + "; ".join(f"{s['stage']} {s['arithmetic']}" for s in result["q15_arithmetic"]))
    return "\n".join(lines)


def _db(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.1f}"


def plot_fidelity(result: dict[str, Any], path: str | Path) -> Path:
    """Two panels: int8 accuracy and agreement per backend; the q15 SNR curve against level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    names = list(result["backends"])
    fig, (ax_bar, ax_curve) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    x = np.arange(len(names))
    acc = [result["backends"][n]["int8_accuracy"] for n in names]
    agree = [result["backends"][n]["agreement_with_float_pipeline"] for n in names]
    ax_bar.bar(x - 0.2, acc, width=0.4, label="int8 accuracy")
    ax_bar.bar(x + 0.2, agree, width=0.4, label="agreement with float pipeline")
    ax_bar.axhline(result["float_pipeline"]["accuracy"], color="k", ls="--", lw=1, label="float pipeline accuracy")
    ax_bar.set_xticks(x, names)
    ax_bar.set_ylim(max(0.0, min(acc + agree) - 0.1), 1.005)
    ax_bar.set_title(f"int8 model fed by each DSP backend ({result['n_windows']} windows)")
    ax_bar.legend(loc="lower left", fontsize="small")
    curve = result.get("q15_snr_curve")
    if curve:
        levels = [p["level_dbfs"] for p in curve["points"]]
        ax_curve.plot(levels, [p["snr_db_min"] for p in curve["points"]], "o-", label="worst frame")
        ax_curve.plot(levels, [p["snr_db_median"] for p in curve["points"]], "s-", label="median frame")
        ax_curve.plot(levels, [p["snr_db_pooled"] for p in curve["points"]], "^-", label="pooled")
        ax_curve.axhline(40, color="r", ls=":", lw=1, label="40 dB")
        ax_curve.set_xlabel("peak level (dBFS)")
        ax_curve.set_ylabel("per-frame SNR vs float definition (dB)")
        ax_curve.set_title("cmsis-q15 SNR against signal level")
        ax_curve.legend(loc="lower right")
        ax_curve.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
