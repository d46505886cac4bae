"""DSP backends: the one frame definition computed the way a microcontroller computes it.

Every backend is a callable ``magnitude_fn(frames (..., nperseg), cfg) -> (..., n_freq) float64``
in physical units, the signature ``StreamingSTFT(cfg, magnitude_fn=...)`` and
``backend_spectrogram`` take, and each computes ``edgecnn.dsp.frame_magnitudes``'s definition:
detrend (constant), window, real FFT, ``|X| / sum(window)``.

- ``numpy``: ``edgecnn.dsp.frame_magnitudes`` itself, float64, the reference.
- ``cmsis-f32``: float32 mean removal (two passes), window multiply, ``arm_rfft_fast_f32`` (packed output:
  y[0] DC, y[1] Nyquist real part, then re/im pairs), ``arm_cmplx_mag_f32``, ``arm_scale_f32``.
- ``cmsis-q15``: the integer path. int16 ADC counts -> integer mean removal fused with a
  block-floating-point shift ``s`` (int32 arithmetic, rounded) -> ``arm_mult_q15`` by the q15
  window -> ``arm_rfft_q15`` (output = X / N) -> ``arm_cmplx_mag_q15`` (2.14: floor(|Z| / 2)),
  with the DC bin taken from the exact int32 sum of the windowed frame. Integer arithmetic
  ends there: one float multiply per bin, ``(2 m + 1) * lsb * N / (2**s * sum(window))``, gives
  physical units, and the feature transform follows in float. See docs/dsp_backends.md.

Inputs: float frames are physical units; int16 frames are ADC counts. A backend built with an
``ADC`` quantises float frames through it first, so every backend can see exactly what the
device's converter delivered; ``cmsis-q15`` always has one (default +/-16 g, 16 bits).

Also here: the working memory of each backend. Fidelity against the float definition lives in
``firmware_sim.dsp_fidelity``, golden vectors for C firmware in ``export.golden``.

Device side: numpy and cmsisdsp only; never imports TensorFlow. cmsisdsp is imported lazily so
the ``numpy`` backend works without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgecnn.config import SpectrogramConfig
from edgecnn.dsp import frame_magnitudes
from edgecnn.errors import ConfigError, InputError
from firmware_sim.adc import ADC

MagnitudeFn = Callable[[np.ndarray, SpectrogramConfig], np.ndarray]

#: FFT lengths CMSIS-DSP provides tables for (arm_rfft_fast_f32: 32..4096; arm_rfft_q15: 32..8192).
F32_LENGTHS = (32, 64, 128, 256, 512, 1024, 2048, 4096)
Q15_LENGTHS = F32_LENGTHS + (8192,)

#: Largest block-floating-point shift: lifts a 1-count frame to the top of q15.
MAX_SHIFT = 15


def _cmsisdsp():
    try:
        import cmsisdsp
    except ImportError:  # pragma: no cover - the dsp extra is part of the dev install
        raise ConfigError("the cmsis-* DSP backends need the cmsisdsp package: "
                          "pip install 'edgecnn[dsp]' (cmsisdsp==1.10.1)") from None
    return cmsisdsp


def _check_frames(frames: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 0 or frames.shape[-1] != cfg.nperseg:
        raise InputError(f"frames have shape {frames.shape}; the last axis must be nperseg={cfg.nperseg}")
    return frames


def _check_length(name: str, nperseg: int, lengths: tuple[int, ...]) -> None:
    if nperseg not in lengths:
        raise ConfigError(f"the {name} backend needs nperseg a power of two in "
                          f"[{lengths[0]}, {lengths[-1]}] (CMSIS-DSP tables), got nperseg={nperseg}")


def _as_units(frames: np.ndarray, adc: ADC | None, name: str) -> np.ndarray:
    """Float frames in physical units, through the ADC when there is one."""
    if np.issubdtype(frames.dtype, np.integer):
        if adc is None:
            raise InputError(f"the {name} backend got integer frames (ADC counts) but has no ADC to give "
                             f"them units: build it with get_backend({name!r}, adc=ADC(...))")
        return adc.to_units(frames)
    if adc is not None:
        return adc.to_units(adc.to_counts(frames))
    return frames


# Backends ------------------------------------------------------------------------------------
class NumpyBackend:
    """The float64 reference definition (``edgecnn.dsp.frame_magnitudes``), optionally behind an ADC."""

    name = "numpy"

    def __init__(self, adc: ADC | None = None) -> None:
        self.adc = adc

    def __call__(self, frames: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
        frames = _check_frames(frames, cfg)
        return frame_magnitudes(_as_units(frames, self.adc, self.name), cfg)


class CmsisF32Backend:
    """CMSIS-DSP's float32 path: arm_mean/offset/mult/rfft_fast/cmplx_mag/scale, frame by frame."""

    name = "cmsis-f32"

    def __init__(self, adc: ADC | None = None) -> None:
        self.adc = adc
        self._tables: dict[tuple, tuple] = {}

    def _setup(self, cfg: SpectrogramConfig) -> tuple:
        key = (cfg.nperseg, cfg.window)
        if key not in self._tables:
            _check_length(self.name, cfg.nperseg, F32_LENGTHS)
            dsp = _cmsisdsp()
            instance = dsp.arm_rfft_fast_instance_f32()
            status = dsp.arm_rfft_fast_init_f32(instance, cfg.nperseg)
            if status != 0:
                raise ConfigError(f"arm_rfft_fast_init_f32 refused nperseg={cfg.nperseg} (status {status})")
            window = cfg.window_array.astype(np.float32)
            inv_gain = np.float32(1.0) / np.float32(window.astype(np.float64).sum())
            self._tables[key] = (dsp, instance, window, inv_gain)
        return self._tables[key]

    def __call__(self, frames: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
        frames = _check_frames(frames, cfg)
        dsp, instance, window, inv_gain = self._setup(cfg)
        flat = np.ascontiguousarray(_as_units(frames, self.adc, self.name), dtype=np.float32)
        flat = flat.reshape(-1, cfg.nperseg)
        half = cfg.nperseg // 2
        out = np.empty((flat.shape[0], cfg.n_freq), dtype=np.float64)
        for i, frame in enumerate(flat):
            if cfg.detrend == "constant":
                # Two passes: with an offset (gravity on a vertical axis) the float32 mean is off by
                # ~1e-6 of the offset, all of which lands in bin 0; the residual's mean is exact enough.
                frame = dsp.arm_offset_f32(frame, -dsp.arm_mean_f32(frame))
                frame = dsp.arm_offset_f32(frame, -dsp.arm_mean_f32(frame))
            packed = dsp.arm_rfft_fast_f32(instance, dsp.arm_mult_f32(frame, window), 0)
            mag = np.empty(cfg.n_freq, dtype=np.float32)
            mag[0] = abs(packed[0])  # DC: purely real
            mag[half] = abs(packed[1])  # Nyquist: purely real, packed in the DC pair's slot
            mag[1:half] = dsp.arm_cmplx_mag_f32(packed[2:])
            out[i] = dsp.arm_scale_f32(mag, inv_gain)
        return out.reshape(frames.shape[:-1] + (cfg.n_freq,))


@dataclasses.dataclass(frozen=True)
class Q15Stages:
    """Every integer stage of k frames of the q15 path (what golden vectors store)."""

    counts: np.ndarray
    """ADC samples, int16 (k, nperseg)."""
    shift: np.ndarray
    """Block-floating-point exponent s in [-1, 15] per frame, int8 (k,): the detrended frame times 2**s."""
    scaled: np.ndarray
    """Detrended, shifted frames, q15 (k, nperseg)."""
    windowed: np.ndarray
    """``arm_mult_q15(scaled, window_q15)``, q15 (k, nperseg)."""
    spectrum: np.ndarray
    """``arm_rfft_q15`` output, q15 re/im pairs of the whole spectrum (k, 2 * nperseg) = X / nperseg."""
    magnitude: np.ndarray
    """``arm_cmplx_mag_q15`` of bins 0..n_freq-1 (k, n_freq), 2.14: floor(|Z| / 2); bin 0 from the sum."""


class Q15Backend:
    """The microcontroller's integer path; ``__call__`` quantises float frames through ``adc``.

    ``block_floating_point`` (default on) shifts each detrended frame up by the largest power of
    two that keeps its peak inside q15, and undoes it after the magnitude: arm_rfft_q15 divides
    by N, so without it a -30 dBFS frame keeps only a few significant bits per bin.

    The integer steps around the CMSIS calls (mean, shift, DC sum) are vectorised over frames
    with numpy's exact int32/int64 arithmetic, which gives the same bits in any order; the CMSIS
    kernels (arm_mult_q15, arm_rfft_q15, arm_cmplx_mag_q15) run frame by frame.
    """

    name = "cmsis-q15"

    def __init__(self, adc: ADC | None = None, *, block_floating_point: bool = True) -> None:
        self.adc = adc if adc is not None else ADC()
        self.block_floating_point = bool(block_floating_point)
        self._tables: dict[tuple, tuple] = {}

    def _setup(self, cfg: SpectrogramConfig) -> tuple:
        key = (cfg.nperseg, cfg.window)
        if key not in self._tables:
            _check_length(self.name, cfg.nperseg, Q15_LENGTHS)
            dsp = _cmsisdsp()
            instance = dsp.arm_rfft_instance_q15()
            status = dsp.arm_rfft_init_q15(instance, cfg.nperseg, 0, 1)
            if status != 0:
                raise ConfigError(f"arm_rfft_init_q15 refused nperseg={cfg.nperseg} (status {status})")
            window_q15 = window_to_q15(cfg.window_array)
            self._tables[key] = (dsp, instance, window_q15)
        return self._tables[key]

    def window_q15(self, cfg: SpectrogramConfig) -> np.ndarray:
        """The window table as the firmware stores it (q15, int16)."""
        return self._setup(cfg)[2]

    def counts(self, frames: np.ndarray) -> np.ndarray:
        """int16 ADC counts of frames: integer frames pass through, float frames go through the ADC."""
        frames = np.asarray(frames)
        if np.issubdtype(frames.dtype, np.integer):
            if frames.dtype != np.int16:
                if frames.min(initial=0) < -32768 or frames.max(initial=0) > 32767:
                    raise InputError("integer frames must be int16 ADC counts; values fall outside int16")
                frames = frames.astype(np.int16)
            return frames
        return self.adc.to_counts(frames)

    def stages(self, counts: np.ndarray, cfg: SpectrogramConfig) -> Q15Stages:
        """Run the integer path on int16 counts (k, nperseg) or (nperseg,) and keep every stage."""
        dsp, instance, window_q15 = self._setup(cfg)
        n = cfg.nperseg
        counts = np.asarray(counts, dtype=np.int16).reshape(-1, n)
        c = counts.astype(np.int64)
        # Detrend and block-floating-point shift fused, in integers: N * (x - mean) is exact
        # (|.| < 2**30 for N <= 8192, an int32 on the device), then one rounding shift by
        # log2(N) - s gives the q15 frame.
        deviation = c * n - (c.sum(axis=1, keepdims=True) if cfg.detrend == "constant" else 0)
        if self.block_floating_point:
            shift = block_exponent(np.abs(deviation).max(axis=1), n)
        else:
            shift = np.zeros(len(c), dtype=np.int8)
        scaled = round_shift(deviation, (n.bit_length() - 1) - shift.astype(np.int64))
        # SSAT: only reachable without block floating point, when |x - mean| exceeds q15.
        scaled = np.clip(scaled, -32768, 32767).astype(np.int16)
        windowed = np.empty_like(scaled)
        spectrum = np.empty((len(c), 2 * n), dtype=np.int16)
        magnitude = np.empty((len(c), cfg.n_freq), dtype=np.int16)
        for i in range(len(c)):
            windowed[i] = dsp.arm_mult_q15(scaled[i], window_q15)
            spectrum[i] = dsp.arm_rfft_q15(instance, windowed[i])
            magnitude[i] = dsp.arm_cmplx_mag_q15(spectrum[i, : 2 * cfg.n_freq])
        # Every truncation in arm_mult_q15 and the FFT's stage shifts biases the same way, and all
        # of that bias lands in bin 0: take the DC term from the exact int32 sum instead.
        dc = np.abs(windowed.astype(np.int64).sum(axis=1)) // (2 * n)
        magnitude[:, 0] = np.minimum(dc, 32767)
        return Q15Stages(counts=counts, shift=shift, scaled=scaled, windowed=windowed,
                         spectrum=spectrum, magnitude=magnitude)

    def to_units(self, stages: Q15Stages, cfg: SpectrogramConfig) -> np.ndarray:
        """Physical magnitudes (k, n_freq) of the integer output: where integer arithmetic stops."""
        window_q15 = self._setup(cfg)[2]
        # arm_cmplx_mag_q15 truncates |Z| / 2 to m: |Z| lies in [2m, 2m + 2); dequantise at the middle.
        z_abs = 2.0 * stages.magnitude.astype(np.float64) + 1.0
        gain = float(window_q15.astype(np.int64).sum()) / 32768.0
        scale = self.adc.lsb * cfg.nperseg / (np.exp2(stages.shift.astype(np.float64)) * gain)
        return z_abs * scale[:, None]

    def __call__(self, frames: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
        frames = _check_frames(frames, cfg)
        counts = self.counts(frames).reshape(-1, cfg.nperseg)
        out = self.to_units(self.stages(counts, cfg), cfg)
        return out.reshape(frames.shape[:-1] + (cfg.n_freq,))


def block_exponent(peak_times_n: np.ndarray, n: int) -> np.ndarray:
    """Per frame, the largest s in [-1, MAX_SHIFT] with round(peak * 2**s) inside q15 (int8).

    ``peak_times_n`` is N * max|x - mean| (exact integers). Firmware gets s from CLZ of the peak.
    s = -1 is the headroom bit: a full-scale frame with an offset deviates from its mean by up to
    twice full scale, which q15 cannot hold.
    """
    peak = np.asarray(peak_times_n, dtype=np.int64)
    candidates = np.arange(0, MAX_SHIFT + 1, dtype=np.int64)
    fits = (peak[:, None] << (candidates[None, :] + 1)) <= 65534 * n - n
    return (fits.sum(axis=1) - 1).astype(np.int8)  # fits is monotone in s: count = s_max + 1


def round_shift(values: np.ndarray, right: np.ndarray) -> np.ndarray:
    """values (k, N) / 2**right (k,) rounded half up: an arithmetic shift with a rounding bias."""
    right = np.asarray(right, dtype=np.int64)[:, None]
    left = np.maximum(-right, 0)
    right = np.maximum(right, 0)
    bias = np.where(right > 0, np.left_shift(1, np.maximum(right - 1, 0)), 0)
    return ((np.asarray(values, dtype=np.int64) << left) + bias) >> right


def window_to_q15(window: np.ndarray) -> np.ndarray:
    """A float window as a q15 table (rounded; 1.0 saturates to 32767)."""
    return np.clip(np.rint(np.asarray(window, dtype=np.float64) * 32768.0), -32768, 32767).astype(np.int16)


# Registry ------------------------------------------------------------------------------------
BACKENDS: dict[str, Callable[..., MagnitudeFn]] = {
    "numpy": NumpyBackend,
    "cmsis-f32": CmsisF32Backend,
    "cmsis-q15": Q15Backend,
}


def get_backend(name: str, *, adc: ADC | None = None) -> MagnitudeFn:
    """A fresh backend by name; ``adc`` (optional) puts the device's converter in front of it."""
    if name not in BACKENDS:
        raise ConfigError(f"unknown DSP backend {name!r}; known backends: {', '.join(BACKENDS)}")
    return BACKENDS[name](adc)


def backend_spectrogram(signals: np.ndarray, cfg: SpectrogramConfig, backend: MagnitudeFn) -> np.ndarray:
    """Batch spectrogram with a backend: (..., L) -> (..., n_freq, n_frames), framed like dsp.spectrogram.

    When the backend has an ADC and the signals are floats, the signals are quantised once, before
    framing, as the device's converter does (a noisy ADC then gives each sample one noise draw).
    """
    signals = np.asarray(signals)
    if signals.ndim == 0 or signals.shape[-1] < cfg.nperseg:
        raise InputError(f"signal has shape {signals.shape}; at least nperseg={cfg.nperseg} samples needed")
    adc = getattr(backend, "adc", None)
    if adc is not None and not np.issubdtype(signals.dtype, np.integer):
        signals = adc.to_counts(signals)
    frames = sliding_window_view(signals, cfg.nperseg, axis=-1)[..., :: cfg.hop, :]
    return np.swapaxes(backend(frames, cfg), -1, -2)


# Working memory ------------------------------------------------------------------------------
#: Bit-reversal table lengths (uint16 entries) of CMSIS-DSP's CFFTs, by complex length.
_BITREV_F32 = {16: 20, 32: 48, 64: 56, 128: 208, 256: 440, 512: 448, 1024: 1800, 2048: 3808}
_BITREV_Q15 = {16: 12, 32: 24, 64: 56, 128: 112, 256: 240, 512: 480, 1024: 992, 2048: 1984, 4096: 4032}
#: CMSIS-DSP's q15 real-FFT split tables (realCoefAQ15, realCoefBQ15): 8192 entries each,
#: shared by every length and linked whole; a length-N transform reads N entries of each.
_REALCOEF_Q15_ENTRIES = 8192
#: sizeof(arm_rfft_fast_instance_f32) and sizeof(arm_rfft_instance_q15) on a 32-bit core.
_INSTANCE_BYTES = 24


def working_memory_bytes(name: str, cfg: SpectrogramConfig) -> dict[str, int]:
    """Bytes of one backend's per-frame working buffers (RAM) and constant tables (flash).

    Buffers are counted separately even where firmware could alias them (the FFTs overwrite
    their input). The sample ring buffer and the feature image belong to the streaming STFT.
    ``numpy`` is the host reference: float64 buffers, pocketfft's plan not counted.
    """
    if name not in BACKENDS:
        raise ConfigError(f"unknown DSP backend {name!r}; known backends: {', '.join(BACKENDS)}")
    n, n_freq = cfg.nperseg, cfg.n_freq
    if name == "numpy":
        ram = {"frame_buffer": 8 * n, "fft_output": 16 * n_freq, "magnitude": 8 * n_freq}
        flash = {"window_table": 8 * n, "fft_tables": 0}
    elif name == "cmsis-f32":
        _check_length(name, n, F32_LENGTHS)
        m = n // 2
        ram = {"frame_buffer": 4 * n, "fft_output": 4 * n, "magnitude": 4 * n_freq,
               "fft_instance": _INSTANCE_BYTES}
        # twiddleCoef_<m> (2m floats) + armBitRevIndexTable<m> + twiddleCoef_rfft_<n> (n floats)
        flash = {"window_table": 4 * n, "fft_tables": 8 * m + 2 * _BITREV_F32[m] + 4 * n}
    else:
        _check_length(name, n, Q15_LENGTHS)
        m = n // 2
        ram = {"frame_buffer": 2 * n, "fft_output": 2 * 2 * n, "magnitude": 2 * n_freq,
               "fft_instance": _INSTANCE_BYTES}
        # twiddleCoef_<m>_q15 (3m/2 q15) + armBitRevIndexTable_fixed_<m> + realCoefA/BQ15
        cfft = 3 * m + 2 * _BITREV_Q15[m]
        flash = {"window_table": 2 * n, "fft_tables": cfft + 2 * 2 * _REALCOEF_Q15_ENTRIES,
                 "fft_tables_trimmed": cfft + 2 * 2 * n}
    out = {**ram, **flash}
    out["ram_total"] = sum(ram.values())
    out["flash_total"] = flash["window_table"] + flash["fft_tables"]
    return out


# The device's declaration ---------------------------------------------------------------------
#: Where a DeviceDSP's backend came from.
DSP_ORIGINS = ("bundle", "option", "default")


@dataclasses.dataclass(frozen=True)
class DeviceDSP:
    """The DSP backend and ADC a device side runs, and where the choice came from.

    ``origin``: ``bundle`` (its manifest's ``device`` section), ``option`` (``--dsp`` overrode
    the backend) or ``default`` (no declaration: the float definition, no ADC). Every output
    that depends on the features records ``to_dict()``.
    """

    name: str
    adc: ADC | None
    origin: str

    @classmethod
    def resolve(cls, device: dict | None, dsp: str | None = None) -> DeviceDSP:
        """From a manifest's ``device`` section (or None) and an optional ``--dsp`` override.

        The ADC is a property of the sensor, so it stays when ``--dsp`` changes the backend;
        ``cmsis-q15`` works on counts, so without a declared ADC it gets the default one.
        """
        device = device or {}
        declared = device.get("dsp")
        name = dsp or declared or "numpy"
        if name not in BACKENDS:
            raise ConfigError(f"unknown DSP backend {name!r}; known backends: {', '.join(BACKENDS)}")
        adc = ADC.from_dict(device["adc"]) if device.get("adc") else None
        if adc is None and name == Q15Backend.name:
            adc = ADC()
        origin = "option" if dsp else ("bundle" if declared else "default")
        return cls(name=name, adc=adc, origin=origin)

    def backend(self) -> MagnitudeFn:
        """A fresh backend with this ADC in front (each stream or report needs its own counters)."""
        adc = ADC.from_dict(self.adc.to_dict()) if self.adc is not None else None
        return get_backend(self.name, adc=adc)

    def to_dict(self) -> dict:
        return {"backend": self.name, "adc": self.adc.to_dict() if self.adc is not None else None,
                "from": self.origin}

    def describe(self) -> str:
        adc = (f", ADC +/-{self.adc.full_scale:g} {self.adc.units} {self.adc.bits}-bit"
               if self.adc is not None else ", no ADC model")
        return f"DSP {self.name} ({self.origin}){adc}"
