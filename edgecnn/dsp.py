"""The one spectrogram definition, as pure functions over numpy arrays.

``frame_magnitudes`` is the per-frame engine (detrend, window, rfft, |.| / sum(window)); the batch
``spectrogram`` frames whole windows and calls it; the device's streaming STFT calls it on the new
frames only. ``scipy.signal.spectrogram(x, fs, window, nperseg, noverlap, scaling='spectrum',
mode='magnitude')`` gives the same numbers (tests hold them to 1e-6 relative).

``features`` adds the feature transform and the normalisation fitted on training data (never
per-window statistics, so a streamed image equals a batch one). ``FrameKernel`` is the same
arithmetic as ``frame_features``, step for step and in buffers allocated once: the device's
streaming STFT calls it for every frame (the same numbers, without temporaries or re-validation).

The ``envelope`` feature (``cfg.feature``) uses the same framing: ``frame_envelope`` demodulates
each frame's band into ``hop / envelope_decimation`` envelope values (the frames' central hops are
contiguous, so they form one envelope signal), and ``envelope_spectra`` turns every run of
``envelope_frames`` frames' values into one image column, the envelope's magnitude spectrum.

Device side imports this module: numpy only, no TensorFlow.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgecnn.config import SpectrogramConfig, window_values
from edgecnn.errors import InputError

#: Windows per chunk in the batch paths: bounds scratch memory to a few tens of MB.
CHUNK_WINDOWS = 256


def frame_magnitudes(frames: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """Magnitude spectrum of each frame: (..., nperseg) -> (..., n_freq), float64."""
    frames = np.asarray(frames)
    if frames.dtype not in (np.float32, np.float64):
        frames = frames.astype(np.float64)
    if frames.shape[-1] != cfg.nperseg:
        raise InputError(f"frames have {frames.shape[-1]} samples; the config needs nperseg={cfg.nperseg}")
    if cfg.detrend == "constant":
        frames = frames - frames.mean(axis=-1, keepdims=True)
    # |rfft(x * w)| / sum(w) == |rfft(x * (w / sum(w)))|: one pass fewer over the spectrum.
    return np.abs(np.fft.rfft(frames * _scaled_window(cfg), axis=-1))


def _scaled_window(cfg: SpectrogramConfig) -> np.ndarray:
    return _scaled_window_cached(cfg.window, cfg.nperseg)


@functools.lru_cache(maxsize=32)
def _scaled_window_cached(window: str | tuple, nperseg: int) -> np.ndarray:
    values = window_values(window, nperseg)
    scaled = values / values.sum()
    scaled.setflags(write=False)
    return scaled


def frame_features(frames: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """Model-ready feature columns of frames: (..., nperseg) -> (..., n_freq), float32."""
    return transform_magnitudes(frame_magnitudes(frames, cfg), cfg, freq_axis=-1)


def rfft_into(nperseg: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``rfft(x)`` along the last axis, written into a preallocated array, with as little per-call
    overhead as numpy allows: numpy >= 2's pocketfft ufunc called directly (``np.fft.rfft`` adds
    about 1.5 us of argument handling per call, as much as a 256-point FFT itself), checked once
    against ``np.fft.rfft`` on a random frame; else ``np.fft.rfft(x, out=)``; numpy 1.x (the legacy
    device environment) allocates."""
    ufunc = getattr(getattr(np.fft, "_pocketfft_umath", None), "rfft_n_even", None)
    if ufunc is not None and nperseg % 2 == 0:
        probe = np.random.default_rng(0).standard_normal((2, nperseg))
        try:
            got = ufunc(probe, 1.0, out=np.empty((2, nperseg // 2 + 1), dtype=np.complex128))
            if np.array_equal(got, np.fft.rfft(probe, axis=-1)):
                return functools.partial(_call_rfft_ufunc, ufunc)
        except (TypeError, ValueError):
            pass
    if "out" in inspect.signature(np.fft.rfft).parameters:
        return lambda x, out: np.fft.rfft(x, axis=-1, out=out)
    return lambda x, out: np.fft.rfft(x, axis=-1)


def _call_rfft_ufunc(ufunc, x: np.ndarray, out: np.ndarray) -> np.ndarray:
    return ufunc(x, 1.0, out=out)


class FrameKernel:
    """``frame_features`` computed in place: the device's per-frame arithmetic.

    ``kernel(frames, out)`` writes the feature columns of ``frames`` (..., nperseg) into ``out``
    (..., n_freq) with the steps of ``frame_magnitudes`` and ``transform_magnitudes`` (detrend as
    numpy's mean computes it, the scaled window, ``|rfft|``, the log floor, the normalisation), in
    scratch buffers of ``rows`` frames allocated once. The transform is folded into one
    multiply-add per column: (20 log10 m - mean) / std becomes log10(m) * (20 / std) - mean / std
    (the same value to a float64 rounding, far below float32's). Spectrogram features only (the
    envelope feature is ``frame_envelope``); ``level`` must be ``none``.
    """

    def __init__(self, cfg: SpectrogramConfig, rows: int, *, sample_dtype=np.float32) -> None:
        if cfg.feature != "spectrogram" or cfg.level != "none":
            raise InputError(f"FrameKernel computes spectrogram features without level removal, "
                             f"not feature={cfg.feature!r} level={cfg.level!r}")
        # Configuration
        self.rows = int(rows)
        self._nperseg = cfg.nperseg
        self._detrend = cfg.detrend == "constant"
        self._window = _scaled_window(cfg)
        self._log = cfg.transform == "log"
        self._floor = 10.0 ** (cfg.log_floor_db / 20.0)
        self._rfft = rfft_into(cfg.nperseg)
        gain = 20.0 if self._log else 1.0
        if cfg.is_normalised:
            std = np.asarray(cfg.norm_std, dtype=np.float64).reshape(-1)
            mean = np.asarray(cfg.norm_mean, dtype=np.float64).reshape(-1)
            self._scale, self._offset = gain / std, mean / std
        else:
            self._scale, self._offset = (np.float64(gain) if self._log else None), None
        # Working variables (allocated once)
        self._frame = np.zeros((self.rows, cfg.nperseg), dtype=sample_dtype)  # detrended frames
        self._windowed = np.zeros((self.rows, cfg.nperseg), dtype=np.float64)
        self._spectrum = np.zeros((self.rows, cfg.n_freq), dtype=np.complex128)
        self._mag = np.zeros((self.rows, cfg.n_freq), dtype=np.float64)

    @property
    def nbytes(self) -> int:
        return self._frame.nbytes + self._windowed.nbytes + self._spectrum.nbytes + self._mag.nbytes

    def __call__(self, frames: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Feature columns of ``frames`` (..., nperseg; at most ``rows`` frames) into ``out``."""
        shape = frames.shape[:-1]
        k = math.prod(shape)
        if k == 1:  # the common case: 1-D arithmetic (numpy scalars cost less than (1, 1) arrays)
            frame, windowed, mag = frames.reshape(-1), self._windowed[0], self._mag[0]
            if self._detrend:
                # frame.mean() as numpy computes it (pairwise sum, then divide), minus its overhead.
                total = np.add.reduce(frame)
                detrended = np.subtract(frame, total.dtype.type(total / self._nperseg), out=self._frame[0])
                np.multiply(detrended, self._window, out=windowed)
            else:
                np.multiply(frame, self._window, out=windowed)
            np.abs(self._rfft(windowed, self._spectrum[0]), out=mag)
        else:
            detrended, windowed, spectrum, mag = self._frame[:k], self._windowed[:k], self._spectrum[:k], self._mag[:k]
            if frames.ndim != 2:  # (..., k, nperseg): the scratch shaped alike
                detrended, windowed = detrended.reshape(frames.shape), windowed.reshape(frames.shape)
                spectrum, mag = spectrum.reshape(*shape, -1), mag.reshape(*shape, -1)
            if self._detrend:
                # frames.mean(axis=-1, keepdims=True) as numpy computes it (pairwise sum, divide).
                mean = np.add.reduce(frames, axis=-1, keepdims=True)
                np.true_divide(mean, self._nperseg, out=mean, casting="unsafe")
                np.multiply(np.subtract(frames, mean, out=detrended), self._window, out=windowed)
            else:
                np.multiply(frames, self._window, out=windowed)
            np.abs(self._rfft(windowed, spectrum), out=mag)
        if self._log:
            np.maximum(mag, self._floor, out=mag)
            np.log10(mag, out=mag)
        if self._scale is not None:
            np.multiply(mag, self._scale, out=mag)
        if self._offset is not None:
            np.subtract(mag, self._offset, out=mag)
        if mag.shape == out.shape:
            out[...] = mag
        else:
            out[...] = mag.reshape(out.shape)
        return out


def frame_count(n_samples: int, cfg: SpectrogramConfig) -> int:
    """Frames a signal of ``n_samples`` yields: ``1 + (n_samples - nperseg) // hop`` (0 if too short)."""
    if n_samples < cfg.nperseg:
        return 0
    return 1 + (n_samples - cfg.nperseg) // cfg.hop


def frame_envelope(frames: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """Envelope values of each frame: (..., nperseg) -> (..., envelope_per_frame), float64.

    The frame's FFT bins ``envelope_bins`` (doubled, every other bin zero) are the analytic signal
    of the band; its magnitude over the frame's central ``hop`` samples (from ``noverlap // 2``),
    averaged in blocks of ``envelope_decimation``, is the envelope at ``fs / decimation``. No
    window, no detrend (the band excludes DC): consecutive frames' central parts are contiguous.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.shape[-1] != cfg.nperseg:
        raise InputError(f"frames have {frames.shape[-1]} samples; the config needs nperseg={cfg.nperseg}")
    low, high = cfg.envelope_bins
    band = np.zeros((*frames.shape[:-1], cfg.nperseg), dtype=np.complex128)
    band[..., low:high + 1] = 2.0 * np.fft.rfft(frames, axis=-1)[..., low:high + 1]
    start = cfg.noverlap // 2
    analytic = np.fft.ifft(band, axis=-1)[..., start:start + cfg.hop]
    envelope = np.abs(analytic).reshape(*frames.shape[:-1], cfg.envelope_per_frame, cfg.envelope_decimation)
    return envelope.mean(axis=-1)


def envelope_spectra(values: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """Envelope spectrum columns: (..., F, per_frame) frame envelopes -> (..., F - span + 1, rows).

    Column ``c`` takes the ``envelope_frames`` frames from ``c``: their values minus their mean,
    times a periodic Hann window scaled to sum 1, zero-padded to ``envelope_nfft``, ``|rfft|``
    without the DC bin (rows 1 .. nfft/2: the mean is gone, what is left there is leakage).
    """
    values = np.asarray(values, dtype=np.float64)
    span, per = cfg.envelope_frames, cfg.envelope_per_frame
    if values.ndim < 2 or values.shape[-1] != per or values.shape[-2] < span:
        raise InputError(f"envelope values must be (..., >= {span} frames, {per}), got {values.shape}")
    runs = sliding_window_view(values, span, axis=-2)  # (..., C, per, span)
    runs = np.swapaxes(runs, -1, -2).reshape(*runs.shape[:-2], span * per)
    runs = runs - runs.mean(axis=-1, keepdims=True)
    return np.abs(np.fft.rfft(runs * _envelope_window(span * per), n=cfg.envelope_nfft, axis=-1)[..., 1:])


def envelope_image(values: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """Model image from frames' envelope values: (..., F, per_frame) -> (..., rows, F - span + 1), float32
    (``envelope_spectra``, then the feature transform and normalisation). The streaming STFTs keep the
    values of their last ``n_frames`` frames and call this for the image."""
    return np.swapaxes(transform_magnitudes(envelope_spectra(values, cfg), cfg, freq_axis=-1), -1, -2)


@functools.lru_cache(maxsize=8)
def _envelope_window(length: int) -> np.ndarray:
    """Periodic Hann window of ``length`` points divided by its sum (read-only)."""
    values = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)
    values = values / values.sum()
    values.setflags(write=False)
    return values


def magnitude_image(signals: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """The image before the feature transform: (..., window_samples) -> (..., rows, cols), float64.

    The spectrogram for ``feature='spectrogram'``, the envelope spectra for ``'envelope'``.
    """
    if cfg.feature == "spectrogram":
        return spectrogram(signals, cfg)
    signals = np.asarray(signals)
    if signals.shape[-1] < cfg.nperseg:
        raise InputError(f"signal has {signals.shape[-1]} samples; at least nperseg={cfg.nperseg} needed")
    frames = sliding_window_view(signals, cfg.nperseg, axis=-1)[..., :: cfg.hop, :]
    return np.swapaxes(envelope_spectra(frame_envelope(frames, cfg), cfg), -1, -2)


def spectrogram(signals: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """Magnitude spectrogram of the last axis: (..., L) -> (..., n_freq, n_frames), float64."""
    signals = np.asarray(signals)
    if signals.shape[-1] < cfg.nperseg:
        raise InputError(f"signal has {signals.shape[-1]} samples; at least nperseg={cfg.nperseg} needed")
    frames = sliding_window_view(signals, cfg.nperseg, axis=-1)[..., :: cfg.hop, :]
    return np.swapaxes(frame_magnitudes(frames, cfg), -1, -2)


def transform_magnitudes(mag: np.ndarray, cfg: SpectrogramConfig, *, freq_axis: int = -2,
                         normalise: bool = True) -> np.ndarray:
    """Feature transform (``magnitude`` or ``log`` dB with a fixed floor), level removal, then
    normalisation.

    ``freq_axis`` names the frequency (row) axis, where per-bin constants apply and over which
    ``level='column_mean'`` averages. Returns float32.
    """
    values = np.asarray(mag, dtype=np.float64)
    if cfg.transform == "log":
        floor = 10.0 ** (cfg.log_floor_db / 20.0)
        values = 20.0 * np.log10(np.maximum(values, floor))
    if cfg.level == "column_mean":
        values = values - values.mean(axis=freq_axis, keepdims=True)
    if normalise and cfg.is_normalised:
        mean = _per_bin(cfg.norm_mean, values.ndim, freq_axis)
        std = _per_bin(cfg.norm_std, values.ndim, freq_axis)
        values = (values - mean) / std
    return values.astype(np.float32)


def _per_bin(values: tuple[float, ...], ndim: int, freq_axis: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 1:
        return arr.reshape(())
    shape = [1] * ndim
    shape[freq_axis] = arr.size
    return arr.reshape(shape)


def features(windows: np.ndarray, cfg: SpectrogramConfig, *, normalise: bool = True,
             progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Model input images of many windows: (N, window_samples) -> (N, rows, cols, 1) float32.

    Computed in chunks so memory stays bounded; ``progress(done, total)`` is called per chunk.
    """
    windows = np.asarray(windows)
    if windows.ndim == 1:
        windows = windows[None, :]
    if windows.ndim != 2 or windows.shape[1] != cfg.window_samples:
        raise InputError(
            f"windows must be (N, {cfg.window_samples}) for this config, got shape {windows.shape}")
    n = windows.shape[0]
    out = np.empty((n, *cfg.input_shape), dtype=np.float32)
    for start in range(0, n, CHUNK_WINDOWS):
        stop = min(n, start + CHUNK_WINDOWS)
        mag = magnitude_image(windows[start:stop], cfg)
        out[start:stop, :, :, 0] = transform_magnitudes(mag, cfg, normalise=normalise)
        if progress is not None:
            progress(stop, n)
    return out


def fit_normalisation(images: np.ndarray, *, per_bin: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of un-normalised feature images (N, rows, cols[, 1]) from training data.

    Per frequency bin by default (pooled over windows and frames), else one global pair. A bin
    with zero spread gets std 1 so it never divides by zero.
    """
    images = np.asarray(images, dtype=np.float64)
    if images.ndim == 4:
        images = images[..., 0]
    if images.ndim != 3 or images.shape[0] == 0:
        raise InputError(f"need a non-empty stack of images (N, rows, cols), got {images.shape}")
    axes = (0, 2) if per_bin else None
    mean = np.atleast_1d(images.mean(axis=axes))
    std = np.atleast_1d(images.std(axis=axes))
    std = np.where(std > 1e-12 * max(1.0, float(np.abs(mean).max())), std, 1.0)
    return mean, std
