"""The streaming STFT: samples in, exactly the new feature columns out, plus a rolling image.

Framing is edgecnn's (``edgecnn.config``): frame ``p`` covers samples
``[origin + p * hop, origin + p * hop + nperseg)``; the sample count is the clock. ``push(block)``
appends the block to a fixed-capacity sample history, computes only the frames the block completed,
applies the bundle's feature transform and normalisation, and drops the columns into a circular
image of the last ``n_frames`` columns (O(1) per frame: one column written, one head index moved).
``image()`` materialises that image in time order: it equals ``edgecnn.dsp.features`` of the
``window_samples`` samples starting at ``window_start``.

Speed (the device hot path; ``benchmarks/bench_stream.py``): with blocks of a few hundred samples
numpy's per-call overhead, not the FFT's arithmetic, is the cost, so

- the sample history is a linear buffer that is compacted (the < ``nperseg`` samples of the next
  frame moved to its front) only when a block does not fit: every frame is a contiguous view,
  never a wrap-around copy;
- a block that completes one frame (the common case) takes the reference arithmetic of
  ``edgecnn.dsp.frame_magnitudes`` and ``transform_magnitudes`` step for step, in place, in
  buffers allocated once: the same numbers, without temporaries or re-validation;
- a push that completes several frames is one vectorised call per ``frames_per_step`` frames,
  framed straight from the block (file replay pushes seconds at a time).

The per-frame function is a parameter (``magnitude_fn(frames (k, nperseg), cfg) -> (k, n_freq)``
float64), so CMSIS-DSP style backends plug in unchanged (they take the vectorised path for every
frame). Device side: numpy only, no TensorFlow; this module decides *when* to call the one
definition of the spectrum, and its single-frame path repeats that definition's steps exactly.

The ``envelope`` feature (``cfg.feature``) uses the same framing and history: each frame gives
``envelope_per_frame`` values (``edgecnn.dsp.frame_envelope``), the ring keeps the last
``n_frames`` frames' values, and ``image()`` turns them into the ``image_cols`` envelope spectrum
columns (``edgecnn.dsp.envelope_spectra``), so the streamed image equals the batch one. It runs on
the numpy backend (with or without the ADC model); the CMSIS backends compute spectrograms only.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import as_strided

from edgecnn.config import SpectrogramConfig
from edgecnn.dsp import _scaled_window, envelope_image, frame_envelope, frame_magnitudes, transform_magnitudes
from edgecnn.errors import ConfigError
from firmware_sim.dsp_backends import _as_units

MagnitudeFn = Callable[[np.ndarray, SpectrogramConfig], np.ndarray]

#: Frames per vectorised call on large pushes: bounds scratch memory (k x nperseg float64); 64
#: keeps the scratch in a core's L2 cache (measured: 64 to 256 are fastest, 16 and 1024 slower).
FRAMES_PER_STEP = 64
#: Sample history: one frame plus this many hops (a block longer than that is framed directly).
HISTORY_HOPS = 32


def _rfft_into(nperseg: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``rfft(x)`` written into a preallocated array, with as little per-call overhead as numpy
    allows: numpy >= 2's pocketfft ufunc called directly (``np.fft.rfft`` adds about 1.5 us of
    argument handling per call, as much as the 256-point FFT itself), checked once against
    ``np.fft.rfft`` on a random frame; else ``np.fft.rfft(x, out=)``; numpy 1.x (the legacy device
    environment) allocates."""
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


def is_reference(magnitude_fn) -> bool:
    """True when ``magnitude_fn`` is ``edgecnn.dsp.frame_magnitudes`` (or the ``numpy`` backend
    without an ADC), whose single-frame arithmetic the fast path repeats in place."""
    if magnitude_fn is frame_magnitudes:
        return True
    return getattr(magnitude_fn, "name", None) == "numpy" and getattr(magnitude_fn, "adc", 1) is None


class FrameClock:
    """The stream clock of a framer, shared by the single- and multi-sensor STFTs.

    Needs ``origin`` (absolute index of the first sample), ``frames`` (frames computed so far),
    ``_written`` (absolute index one past the last sample pushed), ``_hop``, ``_nperseg``, ``_n_frames``.
    """

    @property
    def samples_seen(self) -> int:
        """Absolute index one past the last sample pushed (the stream clock)."""
        return self._written

    @property
    def ready(self) -> bool:
        """True once a full image of ``n_frames`` columns exists."""
        return self.frames >= self._n_frames

    @property
    def window_start(self) -> int:
        """Absolute index of the first sample of the current image's window."""
        return self.origin + (self.frames - self._n_frames) * self._hop

    @property
    def last_frame_end(self) -> int:
        """Absolute index one past the last sample the newest frame used."""
        return self.origin + (self.frames - 1) * self._hop + self._nperseg


class StreamingSTFT(FrameClock):
    """Feature columns of a sample stream, one per hop, and the rolling ``n_frames`` image."""

    def __init__(self, cfg: SpectrogramConfig, *, magnitude_fn: MagnitudeFn = frame_magnitudes,
                 frames_per_step: int = FRAMES_PER_STEP, sample_dtype=np.float32) -> None:
        # Configuration
        if not isinstance(frames_per_step, int) or frames_per_step < 1:
            raise ConfigError(f"frames_per_step={frames_per_step!r} must be an integer >= 1")
        self.cfg = cfg
        self.magnitude_fn = magnitude_fn
        self.frames_per_step = frames_per_step
        self._envelope = cfg.feature == "envelope"
        if self._envelope and magnitude_fn is not frame_magnitudes and getattr(magnitude_fn, "name", None) != "numpy":
            raise ConfigError(f"the envelope feature runs on the numpy DSP backend; "
                              f"{getattr(magnitude_fn, 'name', magnitude_fn)!r} computes spectrograms only")
        self._fast = is_reference(magnitude_fn) and not self._envelope
        # Values each frame leaves in the ring: a feature column, or the frame's envelope values
        width = cfg.envelope_per_frame if self._envelope else cfg.n_freq
        self._width = width
        self._nperseg, self._hop, self._n_frames = cfg.nperseg, cfg.hop, cfg.n_frames
        self._detrend = cfg.detrend == "constant"
        self._window = _scaled_window(cfg)
        self._log = cfg.transform == "log"
        self._floor = 10.0 ** (cfg.log_floor_db / 20.0)
        self._rfft = _rfft_into(cfg.nperseg)
        # The transform as one multiply-add per column: (20 log10 m - mean) / std becomes
        # log10(m) * (20 / std) - mean / std (the same value to a float64 rounding, far below
        # float32's); linear features get m * (1 / std) - mean / std.
        gain = 20.0 if self._log else 1.0
        if cfg.is_normalised:
            std = np.asarray(cfg.norm_std, dtype=np.float64).reshape(-1)
            mean = np.asarray(cfg.norm_mean, dtype=np.float64).reshape(-1)
            self._scale, self._offset = gain / std, mean / std
        else:
            self._scale, self._offset = (np.float64(gain) if self._log else None), None
        # Working variables (allocated once)
        self._buf = np.zeros(cfg.nperseg + cfg.hop * HISTORY_HOPS, dtype=sample_dtype)
        # Scratch of the in-place path, for the most frames one history holds.
        most = max(HISTORY_HOPS + 1, frames_per_step)
        self._frame = np.zeros((most, cfg.nperseg), dtype=sample_dtype)  # detrended frames
        self._windowed = np.zeros((most, cfg.nperseg), dtype=np.float64)
        self._spectrum = np.zeros((most, cfg.n_freq), dtype=np.complex128)
        self._mag = np.zeros((most, cfg.n_freq), dtype=np.float64)
        self._columns = np.zeros((cfg.n_frames, width), dtype=np.float64 if self._envelope else np.float32)
        self._no_columns = np.zeros((0, width), dtype=self._columns.dtype)
        self._no_columns.setflags(write=False)
        self.reset()

    # State -------------------------------------------------------------------------------------
    @property
    def next_frame_end(self) -> int:
        """Absolute index one past the last sample the next frame needs."""
        return self._next_end

    @property
    def nbytes(self) -> int:
        """Bytes of working buffers (sample history, one frame's scratch, column image)."""
        scratch = self._frame.nbytes + self._windowed.nbytes + self._spectrum.nbytes + self._mag.nbytes
        return self._buf.nbytes + scratch + self._columns.nbytes

    @property
    def frames(self) -> int:
        """Frames complete so far (computed, or pending in :meth:`feed` mode)."""
        if self._written < self._next_end:
            return self._done
        return self._done + 1 + (self._written - self._next_end) // self._hop

    # Life cycle --------------------------------------------------------------------------------
    def push(self, block: np.ndarray) -> np.ndarray:
        """Feed samples; returns what the k >= 0 completed frames give (a read-only empty array
        when none completed): feature columns (k, n_freq) float32, or for the envelope feature the
        frames' envelope values (k, envelope_per_frame) float64."""
        early = self._append(block)
        columns = self.flush()
        if early is None:
            return columns
        return early if columns.shape[0] == 0 else np.concatenate((early, columns))

    def feed(self, block: np.ndarray) -> None:
        """Feed samples without computing their frames yet: :meth:`flush` (or :meth:`image`)
        computes every pending frame in one vectorised step (frames are computed earlier only when
        the history is full). The device loop feeds blocks and needs the image only at its
        decision cadence, so it pays numpy's per-call overhead once per decision instead of once
        per frame; the columns are the same numbers."""
        self._append(block)

    def flush(self) -> np.ndarray:
        """Compute every complete frame not computed yet; returns their columns (k, n_freq)."""
        if self._written < self._next_end:
            return self._no_columns
        k = 1 + (self._written - self._next_end) // self._hop
        start = self._next_end - self._nperseg - self._base
        if k == 1:
            frames = self._buf[start:start + self._nperseg][None]
        else:
            step = self._buf.strides[0]
            frames = as_strided(self._buf[start:], shape=(k, self._nperseg),
                                strides=(self._hop * step, step), writeable=False)
        return self._fast_frames(frames) if self._fast else self._many_frames(frames)

    def image(self) -> np.ndarray:
        """The model's image of the last ``n_frames`` frames: (rows, cols, 1) float32 (a copy)."""
        self.flush()
        out = np.empty(self.cfg.input_shape, dtype=np.float32)
        self.image_into(out[:, :, 0])
        return out

    def image_into(self, out: np.ndarray) -> None:
        """Write the image in time order into ``out`` (rows, cols): no allocation for spectrograms."""
        self.flush()
        head = self._head
        tail = self._n_frames - head
        if self._envelope:
            out[:] = envelope_image(np.concatenate((self._columns[head:], self._columns[:head])), self.cfg)
            return
        out[:, :tail] = self._columns[head:].T
        out[:, tail:] = self._columns[:head].T

    def reset(self, origin: int = 0) -> None:
        """Back to the initial state; the next sample pushed has absolute index ``origin``."""
        self._buf[:] = 0
        self._columns[:] = 0
        self._head = 0
        self.origin = int(origin)
        self._done = 0  # frames computed
        self._base = self.origin  # absolute index of _buf[0]
        self._fill = 0
        self._written = self.origin
        self._next_end = self.origin + self._nperseg

    # Internals ---------------------------------------------------------------------------------
    def _append(self, block: np.ndarray) -> np.ndarray | None:
        """Write samples into the history; returns the columns of frames it had to compute to
        make room (None when it computed none)."""
        if type(block) is not np.ndarray or block.ndim != 1:
            block = np.asarray(block).ravel()
        n = block.shape[0]
        fill = self._fill
        early = None
        if fill + n > self._buf.shape[0]:
            early = self.flush()
            fill = self._compact()
            if fill + n > self._buf.shape[0]:
                return self._push_large(block, early)
        self._buf[fill:fill + n] = block
        self._fill = fill + n
        self._written += n
        return early if early is not None and early.shape[0] else None

    def _fast_frames(self, frames: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``frame_magnitudes`` + ``transform_magnitudes`` of k frames (k, nperseg), step for step,
        in buffers allocated once; stores the columns and returns them (k, n_freq) float32, in
        ``out`` when given."""
        k = frames.shape[0]
        windowed, mag = self._windowed[:k], self._mag[:k]
        if k == 1:  # 1-D arithmetic: numpy scalars cost less than (1, 1) arrays
            frames, windowed, mag = frames[0], windowed[0], mag[0]
        if self._detrend and k == 1:
            # frame.mean() as numpy computes it (pairwise sum, then divide), minus its overhead.
            total = np.add.reduce(frames)
            detrended = np.subtract(frames, total.dtype.type(total / self._nperseg), out=self._frame[0])
            np.multiply(detrended, self._window, out=windowed)
        elif self._detrend:
            # frames.mean(axis=-1, keepdims=True) as numpy computes it (pairwise sum, divide).
            mean = np.add.reduce(frames, axis=1, keepdims=True)
            np.true_divide(mean, self._nperseg, out=mean, casting="unsafe")
            detrended = np.subtract(frames, mean, out=self._frame[:k])
            np.multiply(detrended, self._window, out=windowed)
        else:
            np.multiply(frames, self._window, out=windowed)
        np.abs(self._rfft(windowed, self._spectrum[0] if k == 1 else self._spectrum[:k]), out=mag)
        if self._log:
            np.maximum(mag, self._floor, out=mag)
            np.log10(mag, out=mag)
        if self._scale is not None:
            np.multiply(mag, self._scale, out=mag)
        if self._offset is not None:
            np.subtract(mag, self._offset, out=mag)
        if k == 1:  # the common case (one frame per block): no index arrays
            column = self._columns[self._head]
            column[:] = mag
            self._head = (self._head + 1) % self._n_frames
            self._done += 1
            self._next_end += self._hop
            if out is not None:
                out[0] = column
                return out
            return column[None].copy()
        if out is None:
            out = np.empty((k, self.cfg.n_freq), dtype=np.float32)
        out[:] = mag
        self._store(out)
        return out

    def _many_frames(self, frames: np.ndarray) -> np.ndarray:
        if self._envelope:
            columns = frame_envelope(_as_units(frames, getattr(self.magnitude_fn, "adc", None), "numpy"), self.cfg)
            self._store(columns)
            return columns
        columns = transform_magnitudes(self.magnitude_fn(frames, self.cfg), self.cfg, freq_axis=-1)
        self._store(columns)
        return columns

    def _push_large(self, block: np.ndarray, early: np.ndarray | None = None) -> np.ndarray:
        """A block longer than the history: frame it directly (with the samples of the next frame
        in front) in vectorised steps of ``frames_per_step`` frames; returns ``early`` (columns
        computed just before) followed by the new ones."""
        pending = self._buf[:self._fill]
        signal = np.concatenate((pending, block.astype(self._buf.dtype, copy=False)))
        self._written += block.shape[0]
        total = 0 if signal.size < self._nperseg else 1 + (signal.size - self._nperseg) // self._hop
        before = 0 if early is None else early.shape[0]
        out = np.empty((before + total, self._width), dtype=self._columns.dtype)
        if before:
            out[:before] = early
        new = out[before:]
        step = signal.strides[0]
        for first in range(0, total, self.frames_per_step):
            k = min(self.frames_per_step, total - first)
            frames = as_strided(signal[first * self._hop:], shape=(k, self._nperseg),
                                strides=(self._hop * step, step), writeable=False)
            if self._fast:
                self._fast_frames(frames, new[first:first + k])
            else:
                new[first:first + k] = self._many_frames(frames)
        rest = signal[total * self._hop:]
        self._buf[:rest.size] = rest
        self._fill = rest.size
        self._base = self._written - rest.size
        return out

    def _compact(self) -> int:
        """Move the samples the next frame needs to the front of the history; returns the fill."""
        keep = self._next_end - self._nperseg - self._base
        if keep > 0:
            remaining = self._fill - keep
            self._buf[:remaining] = self._buf[keep:self._fill]
            self._fill = remaining
            self._base += keep
        return self._fill

    def _store(self, columns: np.ndarray) -> None:
        n, k = self._n_frames, columns.shape[0]
        keep = columns[-n:]
        slots = (self._head + (k - keep.shape[0]) + np.arange(keep.shape[0])) % n
        self._columns[slots] = keep
        self._head = int((self._head + k) % n)
        self._done += k
        self._next_end += k * self._hop
