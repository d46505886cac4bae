"""The streaming STFT: samples in, exactly the new feature columns out, plus a rolling image.

Framing is edgecnn's (``edgecnn.config``): frame ``p`` covers samples
``[origin + p * hop, origin + p * hop + nperseg)``; the sample count is the clock. ``push(block)``
writes the block into a fixed-capacity ring buffer, computes only the frames the block completed
(all of them in one vectorised call of the per-frame function when a push brings several), applies
the bundle's feature transform and normalisation, and drops the columns into a circular image of
the last ``n_frames`` columns (O(1) per frame: one column written, one head index moved).
``image()`` materialises that image in time order: it equals ``edgecnn.dsp.features`` of the
``window_samples`` samples starting at ``window_start``.

The per-frame function is a parameter (``magnitude_fn(frames (k, nperseg), cfg) -> (k, n_freq)``
float64), so CMSIS-DSP style backends plug in unchanged. Device side: numpy only, no TensorFlow;
this module computes no spectrum itself, it only decides *when* to call the one definition.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgecnn.config import SpectrogramConfig
from edgecnn.dsp import frame_magnitudes, transform_magnitudes
from edgecnn.errors import ConfigError
from firmware_sim.ring_buffer import RingBuffer

MagnitudeFn = Callable[[np.ndarray, SpectrogramConfig], np.ndarray]

#: Frames computed per vectorised step: bounds the ring buffer (nperseg + hop * this samples).
FRAMES_PER_STEP = 32


class StreamingSTFT:
    """Feature columns of a sample stream, one per hop, and the rolling ``n_frames`` image."""

    def __init__(self, cfg: SpectrogramConfig, *, magnitude_fn: MagnitudeFn = frame_magnitudes,
                 frames_per_step: int = FRAMES_PER_STEP, sample_dtype=np.float32) -> None:
        # Configuration
        if not isinstance(frames_per_step, int) or frames_per_step < 1:
            raise ConfigError(f"frames_per_step={frames_per_step!r} must be an integer >= 1")
        self.cfg = cfg
        self.magnitude_fn = magnitude_fn
        self.frames_per_step = frames_per_step
        # Working variables (allocated once)
        self.samples = RingBuffer(cfg.nperseg + cfg.hop * frames_per_step, dtype=sample_dtype)
        self._columns = np.zeros((cfg.n_frames, cfg.n_freq), dtype=np.float32)
        self._head = 0
        self.origin = 0
        self.frames = 0

    # State -------------------------------------------------------------------------------------
    @property
    def samples_seen(self) -> int:
        """Absolute index one past the last sample pushed (the stream clock)."""
        return self.samples.written

    @property
    def ready(self) -> bool:
        """True once a full image of ``n_frames`` columns exists."""
        return self.frames >= self.cfg.n_frames

    @property
    def window_start(self) -> int:
        """Absolute index of the first sample of the current image's window."""
        return self.origin + (self.frames - self.cfg.n_frames) * self.cfg.hop

    @property
    def last_frame_end(self) -> int:
        """Absolute index one past the last sample the newest frame used."""
        return self.origin + (self.frames - 1) * self.cfg.hop + self.cfg.nperseg

    @property
    def nbytes(self) -> int:
        """Bytes of working buffers (sample ring and column image)."""
        return self.samples.nbytes + self._columns.nbytes

    # Life cycle --------------------------------------------------------------------------------
    def push(self, block: np.ndarray) -> np.ndarray:
        """Feed samples; returns the new feature columns (k, n_freq) float32, k >= 0."""
        block = np.asarray(block).ravel()
        out = []
        pos = 0
        while pos < block.size:
            piece = block[pos:pos + self.samples.free]
            self.samples.write(piece)
            pos += piece.size
            columns = self._compute_ready_frames()
            if columns.shape[0]:
                out.append(columns)
        if not out:
            return np.zeros((0, self.cfg.n_freq), dtype=np.float32)
        return out[0] if len(out) == 1 else np.concatenate(out)

    def image(self) -> np.ndarray:
        """The last ``n_frames`` columns in time order: (n_freq, n_frames, 1) float32 (a copy)."""
        ordered = np.concatenate((self._columns[self._head:], self._columns[:self._head]))
        return np.ascontiguousarray(ordered.T)[:, :, None]

    def reset(self, origin: int = 0) -> None:
        """Back to the initial state; the next sample pushed has absolute index ``origin``."""
        self.samples.reset(origin)
        self._columns[:] = 0
        self._head = 0
        self.origin = int(origin)
        self.frames = 0

    # Internals ---------------------------------------------------------------------------------
    def _compute_ready_frames(self) -> np.ndarray:
        cfg = self.cfg
        first = self.origin + self.frames * cfg.hop
        k = 0 if self.samples.written < first + cfg.nperseg else \
            1 + (self.samples.written - first - cfg.nperseg) // cfg.hop
        if k == 0:
            return np.zeros((0, cfg.n_freq), dtype=np.float32)
        frames = self.samples.frames(first, k, cfg.nperseg, cfg.hop)
        columns = transform_magnitudes(self.magnitude_fn(frames, cfg), cfg, freq_axis=-1)
        self._store(columns)
        self.frames += k
        self.samples.discard_until(self.origin + self.frames * cfg.hop)
        return columns

    def _store(self, columns: np.ndarray) -> None:
        n = self.cfg.n_frames
        if columns.shape[0] == 1:  # the common case (one frame per block): no index arrays
            self._columns[self._head] = columns[0]
            self._head = (self._head + 1) % n
            return
        keep = columns[-n:]
        slots = (self._head + (columns.shape[0] - keep.shape[0]) + np.arange(keep.shape[0])) % n
        self._columns[slots] = keep
        self._head = int((self._head + columns.shape[0]) % n)
