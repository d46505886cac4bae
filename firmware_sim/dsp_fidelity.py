"""How far a DSP backend is from the float definition, and where the q15 path loses precision.

Per frame: SNR in dB (reference energy over error energy) and the max relative error (max-bin
error over the frame's max magnitude). Over a set: ``fidelity`` (any backend against the float64
definition on the same float windows), ``snr_curve`` (the q15 path with the windows scaled to
each peak level in dBFS), ``q15_error_budget`` (integer stages one by one, the rest exact) and
``frame_crest_factor_db`` (what bounds a frame's q15 SNR). The reference is always the float
definition of the unquantised signal, so ADC quantisation counts as error, as on a device.

Device side: numpy and cmsisdsp only; never imports TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgecnn.config import SpectrogramConfig
from edgecnn.dsp import frame_magnitudes
from edgecnn.errors import InputError
from firmware_sim.adc import ADC
from firmware_sim.dsp_backends import MagnitudeFn, NumpyBackend, Q15Backend, backend_spectrogram


def frame_snr_db(test: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-frame SNR in dB of magnitudes (..., n_freq) against a reference: energy / error energy.

    +inf for an exact frame; frames whose reference is all zero give -inf unless exact.
    """
    test = np.asarray(test, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    signal = np.sum(reference**2, axis=-1)
    noise = np.sum((test - reference) ** 2, axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = 10.0 * np.log10(signal / noise)
    return np.where(noise == 0, np.inf, np.nan_to_num(snr, nan=-np.inf))


def frame_crest_factor_db(frames: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """Per frame, 20 log10(peak / windowed RMS) of the detrended frame: what limits q15 SNR.

    Block floating point sets the frame's peak to full scale; arm_rfft_q15's rounding noise is a
    few LSB whatever the input, so the SNR of a frame falls 1 dB per dB of crest factor.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim == 0 or frames.shape[-1] != cfg.nperseg:
        raise InputError(f"frames have shape {frames.shape}; the last axis must be nperseg={cfg.nperseg}")
    dev = frames - frames.mean(axis=-1, keepdims=True)
    rms = np.sqrt(np.mean((dev * cfg.window_array) ** 2, axis=-1))
    peak = np.max(np.abs(dev), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 20.0 * np.log10(peak / rms)


def max_relative_error(test: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-frame max |test - reference| over bins, relative to the frame's max reference magnitude."""
    test = np.asarray(test, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    peak = np.max(np.abs(reference), axis=-1)
    err = np.max(np.abs(test - reference), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(peak > 0, err / peak, np.where(err == 0, 0.0, np.inf))


@dataclasses.dataclass(frozen=True)
class Fidelity:
    """A backend's per-frame error against the float definition over a set of frames."""

    backend: str
    frames: int
    snr_db_min: float
    snr_db_p05: float
    snr_db_median: float
    snr_db_pooled: float
    """Total reference energy over total error energy, all frames together."""
    max_rel_error: float
    """Max over frames of max-bin error / the frame's max magnitude (infinity norm)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def fidelity(backend: MagnitudeFn, windows: np.ndarray, cfg: SpectrogramConfig, *,
             name: str | None = None) -> Fidelity:
    """Compare ``backend`` with the float64 definition on every frame of ``windows`` (N, L) float."""
    windows = np.asarray(windows, dtype=np.float64)
    if windows.ndim == 1:
        windows = windows[None, :]
    reference = np.swapaxes(backend_spectrogram(windows, cfg, NumpyBackend()), -1, -2).reshape(-1, cfg.n_freq)
    test = np.swapaxes(backend_spectrogram(windows, cfg, backend), -1, -2).reshape(-1, cfg.n_freq)
    return compare_frames(test, reference, name or getattr(backend, "name", "custom"))


def compare_frames(test: np.ndarray, reference: np.ndarray, name: str) -> Fidelity:
    """Fidelity of magnitudes (frames, n_freq) against reference magnitudes of the same frames."""
    test = np.asarray(test, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    snr = frame_snr_db(test, reference)
    pooled_noise = float(np.sum((test - reference) ** 2))
    pooled = math.inf if pooled_noise == 0 else 10.0 * math.log10(float(np.sum(reference**2)) / pooled_noise)
    return Fidelity(
        backend=name, frames=int(snr.size), snr_db_min=float(np.min(snr)),
        snr_db_p05=float(np.percentile(snr, 5)), snr_db_median=float(np.median(snr)),
        snr_db_pooled=pooled, max_rel_error=float(np.max(max_relative_error(test, reference))))


#: Stages of the q15 path, in order, as ``q15_error_budget`` names them.
Q15_STAGES = ("adc", "detrend+shift", "window_q15", "rfft_q15", "cmplx_mag_q15")


def q15_error_budget(windows: np.ndarray, cfg: SpectrogramConfig, adc: ADC | None = None, *,
                     block_floating_point: bool = True) -> list[Fidelity]:
    """Where the q15 path loses precision: fidelity after each integer stage, the rest exact.

    Row ``adc`` is the float definition on the ADC counts; ``detrend+shift`` adds the integer
    mean removal and shift (window, FFT, magnitude in float64); ``window_q15`` the q15 window
    multiply; ``rfft_q15`` arm_rfft_q15 (exact magnitude of its output); ``cmplx_mag_q15`` is
    the whole path. Each row compares against the float definition of the unquantised windows.
    """
    backend = Q15Backend(adc, block_floating_point=block_floating_point)
    windows = np.asarray(windows, dtype=np.float64)
    if windows.ndim == 1:
        windows = windows[None, :]
    float_frames = sliding_window_view(windows, cfg.nperseg, axis=-1)[..., :: cfg.hop, :]
    reference = frame_magnitudes(float_frames, cfg).reshape(-1, cfg.n_freq)
    counts = backend.counts(windows)
    frames = sliding_window_view(counts, cfg.nperseg, axis=-1)[..., :: cfg.hop, :].reshape(-1, cfg.nperseg)
    window = cfg.window_array
    window_q15 = backend.window_q15(cfg)
    gain_q15 = float(window_q15.astype(np.int64).sum()) / 32768.0
    lsb, n = backend.adc.lsb, cfg.nperseg
    st = backend.stages(frames, cfg)
    units = (lsb / np.exp2(st.shift.astype(np.float64)))[:, None]
    rows = {"adc": frame_magnitudes(frames.astype(np.float64) * lsb, cfg)}
    rows["detrend+shift"] = np.abs(np.fft.rfft(st.scaled * window, axis=-1)) * units / window.sum()
    windowed = np.abs(np.fft.rfft(st.windowed.astype(np.float64), axis=-1))
    rows["window_q15"] = windowed * units / gain_q15
    half = st.spectrum[:, : 2 * cfg.n_freq].astype(np.float64)
    z = np.abs(half[:, 0::2] + 1j * half[:, 1::2])
    z[:, 0] = windowed[:, 0] / n  # the path's DC bin comes from the exact sum
    rows["rfft_q15"] = z * n * units / gain_q15
    rows["cmplx_mag_q15"] = backend.to_units(st, cfg)
    return [compare_frames(rows[stage], reference, stage) for stage in Q15_STAGES]


def scale_to_dbfs(windows: np.ndarray, level_db: float, adc: ADC) -> np.ndarray:
    """Each window scaled so its peak sits at ``level_db`` dBFS (0 dBFS = the ADC's top code)."""
    windows = np.asarray(windows, dtype=np.float64)
    peak = np.max(np.abs(windows), axis=-1, keepdims=True)
    if np.any(peak == 0):
        raise InputError("cannot scale an all-zero window to a dBFS level")
    return windows / peak * (adc.max_units * 10.0 ** (level_db / 20.0))


def snr_curve(windows: np.ndarray, cfg: SpectrogramConfig, *, levels_db: Iterable[float] = range(-40, 1, 5),
              adc: ADC | None = None, block_floating_point: bool = True) -> list[Fidelity]:
    """The q15 path's fidelity with the windows scaled to each peak level in dBFS (one row each).

    The reference is the float definition of the scaled (unquantised) windows, so ADC
    quantisation counts as error, as it does on the device.
    """
    adc = adc if adc is not None else ADC()
    rows = []
    for level in levels_db:
        backend = Q15Backend(adc, block_floating_point=block_floating_point)
        row = fidelity(backend, scale_to_dbfs(windows, level, adc), cfg, name=f"cmsis-q15@{level:g}dBFS")
        rows.append(row)
    return rows
