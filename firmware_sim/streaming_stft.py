"""The streaming STFT of one or N synchronised sensors: samples in, the new feature columns out,
plus a rolling image per sensor.

Framing is edgecnn's (``edgecnn.config``): frame ``p`` covers samples
``[origin + p * hop, origin + p * hop + nperseg)``; the sample count is the clock, shared by every
sensor (one multi-channel ADC: a block of every sensor arrives together). ``push(block)`` appends
the block to a fixed-capacity sample history, computes only the frames the block completed, and
drops each frame's image column into a circular image of the last ``image_cols`` columns (O(1)
per frame: one column written, one head index moved). ``image()`` materialises a sensor's image in
time order: it equals ``edgecnn.dsp.features`` of the ``window_samples`` samples starting at
``window_start``. A single sensor is the case N = 1: blocks and columns without the sensor axis.

Speed (the device hot path; ``benchmarks/bench_stream.py``, ``bench_multi.py``): with blocks of a
few hundred samples numpy's per-call overhead, not the FFT's arithmetic, is the cost, so

- the sample history is a linear buffer that is compacted (the < ``nperseg`` samples of the next
  frame moved to its front) only when a block does not fit: every frame is a contiguous view,
  never a wrap-around copy;
- frames are computed by ``edgecnn.dsp.FrameKernel`` (the reference arithmetic of
  ``frame_features``, in place), every sensor's and every pending frame in one vectorised call
  (``feed`` defers them to the next ``flush`` or image: the device loop pays numpy's per-call
  overhead once per decision, not once per frame and sensor);
- a push longer than the history is framed straight from the block in steps of
  ``frames_per_step`` frames (file replay pushes seconds at a time).

The per-frame function is a parameter (``magnitude_fn(frames (k, nperseg), cfg) -> (k, n_freq)``
float64), so CMSIS-DSP style backends plug in unchanged (they get every frame through
``transform_magnitudes``). Device side: numpy only, no TensorFlow; this module decides *when* to
call the one definition of the features.

The ``envelope`` feature (``cfg.feature``) uses the same framing and history: each frame gives
``envelope_per_frame`` values (``edgecnn.dsp.frame_envelope``), kept in a ring of the last
``n_frames`` frames. Each frame completes one image column, the envelope spectrum of the
``envelope_frames`` frames ending with it (``edgecnn.dsp.envelope_spectra``): a fleet computes the
columns with the frames (an even load per block), a lone sensor those of the frames since its last
image when it needs one, in one call (14 spectra at a decision every 14 frames, not the image's 27;
the C firmware computes one per frame). The streamed image equals the batch one. It runs on the
numpy backend (with or without the ADC model); the CMSIS backends compute spectrograms only.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from edgecnn.config import SpectrogramConfig
from edgecnn.dsp import FrameKernel, envelope_spectra, frame_envelope, frame_magnitudes, transform_magnitudes
from edgecnn.errors import ConfigError, InputError
from firmware_sim.dsp_backends import _as_units

MagnitudeFn = Callable[[np.ndarray, SpectrogramConfig], np.ndarray]

#: Frames per vectorised call on large pushes, and the frame kernel's scratch rows (times up to
#: 8 sensors): bounds scratch memory (rows x nperseg float64); 64 keeps one sensor's scratch in a
#: core's L2 cache (measured: 64 to 256 are fastest, 16 and 1024 slower).
FRAMES_PER_STEP = 64
#: Sample history: one frame plus this many hops (a block longer than that is framed directly).
HISTORY_HOPS = 32


def is_reference(magnitude_fn) -> bool:
    """True when ``magnitude_fn`` is ``edgecnn.dsp.frame_magnitudes`` (or the ``numpy`` backend
    without an ADC), whose arithmetic ``FrameKernel`` computes in place."""
    if magnitude_fn is frame_magnitudes:
        return True
    return getattr(magnitude_fn, "name", None) == "numpy" and getattr(magnitude_fn, "adc", 1) is None


class StreamingSTFT:
    """Feature columns of N sample streams (one clock), one per hop, and each sensor's rolling image."""

    def __init__(self, cfg: SpectrogramConfig, *, n_sensors: int = 1, magnitude_fn: MagnitudeFn = frame_magnitudes,
                 frames_per_step: int = FRAMES_PER_STEP, sample_dtype=np.float32) -> None:
        # Configuration
        if not isinstance(frames_per_step, int) or frames_per_step < 1:
            raise ConfigError(f"frames_per_step={frames_per_step!r} must be an integer >= 1")
        if not isinstance(n_sensors, (int, np.integer)) or isinstance(n_sensors, bool) or n_sensors < 1:
            raise ConfigError(f"n_sensors={n_sensors!r} must be an integer >= 1")
        self.cfg = cfg
        self.n_sensors = int(n_sensors)
        self.magnitude_fn = magnitude_fn
        self.frames_per_step = frames_per_step
        self._envelope = cfg.feature == "envelope"
        if self._envelope and magnitude_fn is not frame_magnitudes and getattr(magnitude_fn, "name", None) != "numpy":
            raise ConfigError(f"the envelope feature runs on the numpy DSP backend; "
                              f"{getattr(magnitude_fn, 'name', magnitude_fn)!r} computes spectrograms only")
        self._nperseg, self._hop, self._n_frames = cfg.nperseg, cfg.hop, cfg.n_frames
        self._n_cols = cfg.image_cols
        # What a frame gives: a feature column, or (envelope) the frame's envelope values.
        self._width = cfg.envelope_per_frame if self._envelope else cfg.n_freq
        self._span = cfg.envelope_frames if self._envelope else 1
        # Frame kernel rows: every pending frame of a few sensors per call.
        self._rows = max(HISTORY_HOPS + 1, frames_per_step) * min(self.n_sensors, 8)
        self._kernel = (FrameKernel(cfg, self._rows, sample_dtype=sample_dtype)
                        if is_reference(magnitude_fn) and not self._envelope and cfg.level == "none" else None)
        # Working variables (allocated once)
        n = self.n_sensors
        self._buf = np.zeros((n, cfg.nperseg + cfg.hop * HISTORY_HOPS), dtype=sample_dtype)
        self._buf0 = self._buf[0]  # sensor 0's history (a view)
        self._columns = np.zeros((n, self._n_cols, cfg.image_rows), dtype=np.float32)  # the image ring
        # Envelope: the last n_frames frames' values, a ring (the columns pending at an image need
        # at most envelope_frames - 1 + image_cols = n_frames of them).
        self._values = np.zeros((n, self._n_frames if self._envelope else 0, self._width), dtype=np.float64)
        # The image ring before the first frame: zeros; for the envelope, the column of all-zero
        # values (what the batch definition gives for frames before the stream).
        self._zero_column = (transform_magnitudes(np.zeros((1, cfg.image_rows)), cfg, freq_axis=-1)[0]
                             if self._envelope else np.float32(0.0))
        self._no_columns = np.zeros((n, 0, self._width), dtype=np.float64 if self._envelope else np.float32)
        self._no_columns.setflags(write=False)
        self.reset()

    # State -------------------------------------------------------------------------------------
    @property
    def samples_seen(self) -> int:
        """Absolute index one past the last sample pushed (the stream clock)."""
        return self._written

    @property
    def frames(self) -> int:
        """Frames complete so far (computed, or pending in :meth:`feed` mode)."""
        if self._written < self._next_end:
            return self._done
        return self._done + 1 + (self._written - self._next_end) // self._hop

    @property
    def ready(self) -> bool:
        """True once a full image of ``n_frames`` frames exists."""
        return self.frames >= self._n_frames

    @property
    def window_start(self) -> int:
        """Absolute index of the first sample of the current image's window."""
        return self.origin + (self.frames - self._n_frames) * self._hop

    @property
    def last_frame_end(self) -> int:
        """Absolute index one past the last sample the newest frame used."""
        return self.origin + (self.frames - 1) * self._hop + self._nperseg

    @property
    def next_frame_end(self) -> int:
        """Absolute index one past the last sample the next frame needs."""
        return self._next_end

    @property
    def nbytes(self) -> int:
        """Bytes of working buffers (sample history, frame scratch, image ring, envelope context)."""
        scratch = self._kernel.nbytes if self._kernel is not None else 0
        return self._buf.nbytes + scratch + self._columns.nbytes + self._values.nbytes

    # Life cycle --------------------------------------------------------------------------------
    def push(self, block: np.ndarray) -> np.ndarray:
        """Feed samples ((n,) for one sensor, (N, n) for N); returns what the k >= 0 completed
        frames give, (k, width) for one sensor and (N, k, width) for N (a read-only empty array
        when none completed): feature columns float32, or for the envelope feature the frames'
        envelope values float64."""
        early = self._append(block)
        columns = self._flush()
        if early is not None and early.shape[1]:
            columns = early if columns.shape[1] == 0 else np.concatenate((early, columns), axis=1)
        return columns if self.n_sensors > 1 else columns[0]

    def feed(self, block: np.ndarray, max_pending: int | None = None) -> None:
        """Feed samples without computing their frames yet: :meth:`flush` (or an image) computes
        every pending frame in one vectorised step (frames are computed earlier when the history
        is full, or once ``max_pending`` frames are pending). The device loop feeds blocks and
        needs images only at its decision cadence; the columns are the same numbers."""
        self._append(block)
        if max_pending is not None and self._written >= self._next_end + (max_pending - 1) * self._hop:
            self._flush()

    def flush(self) -> np.ndarray:
        """Compute every complete frame not computed yet; returns what they give, shaped as
        :meth:`push` returns it."""
        columns = self._flush()
        return columns if self.n_sensors > 1 else columns[0]

    def _flush(self) -> np.ndarray:
        if self._written < self._next_end:
            return self._no_columns
        k = 1 + (self._written - self._next_end) // self._hop
        start = self._next_end - self._nperseg - self._base
        if k == 1 and self._kernel is not None and self.n_sensors == 1:  # push's common case: 1-D,
            column = self._columns[0, self._head]  # straight into the image ring
            self._kernel(self._buf0[start:start + self._nperseg], column)
            self._head = (self._head + 1) % self._n_cols
            self._done += 1
            self._next_end += self._hop
            return column[None, None].copy()
        frames = self._frames_view(self._buf, start, k)
        out = np.empty((self.n_sensors, k, self._width), dtype=self._no_columns.dtype)
        self._frames_into(frames, out)
        self._store(out)
        return out

    def image(self, sensor: int = 0) -> np.ndarray:
        """One sensor's model image of the last ``n_frames`` frames: (rows, cols, 1) float32 (a copy)."""
        out = np.empty((1, *self.cfg.input_shape[:2]), dtype=np.float32)
        self.images_into(out, slice(sensor, sensor + 1))
        return out[0, :, :, None]

    def images_into(self, out: np.ndarray, sensors: np.ndarray | slice | None = None) -> None:
        """Every sensor's image (or those of ``sensors``, indices in that order or a slice) in time
        order into ``out`` (k, rows, cols): no allocation beyond an index array's selection."""
        self._flush()
        if self._envelope:
            self._columns_for_new_frames()
        head = self._head
        tail = self._n_cols - head
        columns = self._columns if sensors is None else self._columns[sensors]
        out[:, :, :tail] = columns[:, head:].transpose(0, 2, 1)
        out[:, :, tail:] = columns[:, :head].transpose(0, 2, 1)

    def reset(self, origin: int = 0) -> None:
        """Back to the initial state; the next sample pushed has absolute index ``origin``."""
        self._buf[:] = 0
        self._columns[:] = self._zero_column
        self._values[:] = 0
        self._head = 0  # the image ring's next column
        self._vhead = 0  # envelope: the values ring's next frame
        self._columns_done = 0  # envelope: frames whose column is in the image ring
        self.origin = int(origin)
        self._done = 0  # frames computed
        self._base = self.origin  # absolute index of _buf[:, 0]
        self._fill = 0
        self._written = self.origin
        self._next_end = self.origin + self._nperseg

    # Internals ---------------------------------------------------------------------------------
    def _append(self, block: np.ndarray) -> np.ndarray | None:
        """Write samples into the history; returns what the frames it had to compute to make room
        give (None when it computed none)."""
        if type(block) is not np.ndarray:
            block = np.asarray(block)
        lone = block.ndim == 1 and self.n_sensors == 1  # a lone sensor's samples: 1-D writes
        if not lone and (block.ndim != 2 or block.shape[0] != self.n_sensors):
            raise InputError(f"blocks of shape {block.shape}: expected ({self.n_sensors}, samples)")
        n = block.shape[-1]
        fill = self._fill
        early = None
        if fill + n > self._buf.shape[1]:
            early = self._flush()
            fill = self._compact()
            if fill + n > self._buf.shape[1]:
                return self._push_large(block.reshape(self.n_sensors, n), early)
        if lone:
            self._buf0[fill:fill + n] = block
        else:
            self._buf[:, fill:fill + n] = block
        self._fill = fill + n
        self._written += n
        return early if early is not None and early.shape[1] else None

    def _frames_into(self, frames: np.ndarray, out: np.ndarray) -> None:
        """What frames (N, k, nperseg) give, into ``out`` (N, k, width): the frame kernel, or the
        backend's function, in chunks of at most ``_rows`` frames (temporaries stay in cache)."""
        n, k = frames.shape[:2]
        compute = self._kernel if self._kernel is not None else self._compute
        if n == 1 and k <= self._rows:  # the common case: one call on (k, nperseg)
            compute(frames[0], out[0])
            return
        if n * k <= self._rows:
            compute(frames, out)
            return
        per_call = min(k, self._rows)
        sensors = max(1, self._rows // per_call)
        for first in range(0, n, sensors):
            for f in range(0, k, per_call):
                compute(frames[first:first + sensors, f:f + per_call], out[first:first + sensors, f:f + per_call])

    def _compute(self, frames: np.ndarray, out: np.ndarray) -> None:
        """What frames (..., nperseg) give through the backend's function (or the envelope's)."""
        flat = frames.reshape(-1, self._nperseg)
        if self._envelope:
            values = frame_envelope(_as_units(flat, getattr(self.magnitude_fn, "adc", None), "numpy"), self.cfg)
        else:
            values = transform_magnitudes(self.magnitude_fn(flat, self.cfg), self.cfg, freq_axis=-1)
        out[...] = values.reshape(out.shape)

    def _push_large(self, block: np.ndarray, early: np.ndarray | None = None) -> np.ndarray:
        """A block longer than the history: frame it directly (with the samples of the next frame
        in front) in vectorised steps of ``frames_per_step`` frames; returns ``early`` (what was
        computed just before) followed by the new frames' output."""
        pending = self._buf[:, :self._fill]
        signal = np.concatenate((pending, block.astype(self._buf.dtype, copy=False)), axis=1)
        self._written += block.shape[1]
        length = signal.shape[1]
        total = 0 if length < self._nperseg else 1 + (length - self._nperseg) // self._hop
        before = 0 if early is None else early.shape[1]
        out = np.empty((self.n_sensors, before + total, self._width), dtype=self._no_columns.dtype)
        if before:
            out[:, :before] = early
        for first in range(0, total, self.frames_per_step):
            k = min(self.frames_per_step, total - first)
            frames = self._frames_view(signal, first * self._hop, k)
            new = out[:, before + first:before + first + k]
            self._frames_into(frames, new)
            self._store(new)
        rest = signal[:, total * self._hop:]
        self._buf[:, :rest.shape[1]] = rest
        self._fill = rest.shape[1]
        self._base = self._written - rest.shape[1]
        return out

    def _frames_view(self, samples: np.ndarray, start: int, k: int) -> np.ndarray:
        """The k frames (N, k, nperseg) of ``samples`` (N, L), a C-contiguous array, from column
        ``start`` on: a strided view (numpy's constructor; ``as_strided`` costs 10x more per call)."""
        item = samples.itemsize
        return np.ndarray((self.n_sensors, k, self._nperseg), samples.dtype, samples, start * item,
                          (samples.strides[0], self._hop * item, item))

    def _compact(self) -> int:
        """Move the samples the next frame needs to the front of the history; returns the fill."""
        keep = self._next_end - self._nperseg - self._base
        if keep > 0:
            remaining = self._fill - keep
            self._buf[:, :remaining] = self._buf[:, keep:self._fill]
            self._fill = remaining
            self._base += keep
        return self._fill

    def _store(self, given: np.ndarray) -> None:
        """Put k new frames' output (N, k, width) into the image ring (envelope: into the values
        ring; a fleet computes the columns they complete now, a lone sensor at its next image)."""
        k = given.shape[1]
        if k == 0:
            return
        if self._envelope:
            self._vhead = self._ring_put(self._values, self._vhead, given)
        else:
            self._head = self._ring_put(self._columns, self._head, given)
        self._done += k
        self._next_end += k * self._hop
        if self._envelope and self.n_sensors > 1:
            self._columns_for_new_frames()

    def _columns_for_new_frames(self) -> None:
        """Envelope: the image columns the frames computed since the last call complete, each the
        envelope spectrum of the ``envelope_frames`` frames ending with it (at most ``image_cols``
        of them: older ones would leave the image), vectorised in cache-sized chunks of sensors."""
        m = min(self._done - self._columns_done, self._n_cols)
        if m == 0:
            return
        length = self._span - 1 + m
        frames = (self._vhead - length + np.arange(length)) % self._n_frames
        step = max(1, self._rows // m)  # spectra per call: at most the kernel's rows (cache-sized)
        for first in range(0, self.n_sensors, step):
            values = self._values[first:first + step, frames]
            columns = transform_magnitudes(envelope_spectra(values, self.cfg), self.cfg, freq_axis=-1)
            self._ring_put(self._columns[first:first + step], self._head, columns)
        self._head = (self._head + m) % self._n_cols
        self._columns_done = self._done

    @staticmethod
    def _ring_put(ring: np.ndarray, head: int, new: np.ndarray) -> int:
        """Write ``new`` (N, k, width) into ``ring`` (N, size, width) from ``head`` on, keeping the
        last ``size`` if k is larger; returns the new head. Slices, no index arrays."""
        size, k = ring.shape[1], new.shape[1]
        end = (head + k) % size
        if k == 1:  # the common case
            ring[:, head] = new[:, 0]
            return end
        keep = min(k, size)
        first = (end - keep) % size  # where the kept part starts
        split = min(keep, size - first)
        ring[:, first:first + split] = new[:, k - keep:k - keep + split]
        if split < keep:
            ring[:, :keep - split] = new[:, k - keep + split:]
        return end
