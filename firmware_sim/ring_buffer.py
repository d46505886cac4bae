"""A fixed-capacity sample ring buffer: the DMA-side store of the device.

Allocated once in ``__init__`` (numpy, ``capacity`` samples); ``write`` and ``read`` move two
monotonically increasing counters (``written``, ``consumed``), so positions are absolute sample
indices: the sample count is the clock. What happens when a write would overrun unread samples is
an explicit policy: ``"error"`` refuses the write (InputError, nothing written), ``"overwrite"``
drops the oldest unread samples and counts them in ``overrun``.

Device side: numpy only; never allocates per write except the arrays it returns.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from edgecnn.errors import ConfigError, InputError

POLICIES = ("error", "overwrite")


class RingBuffer:
    """``capacity`` samples of ``dtype`` with absolute write/read counters."""

    def __init__(self, capacity: int, *, dtype=np.float32, policy: str = "error") -> None:
        # Configuration
        if not isinstance(capacity, (int, np.integer)) or capacity < 1:
            raise ConfigError(f"ring buffer capacity={capacity!r} must be an integer >= 1")
        if policy not in POLICIES:
            raise ConfigError(f"ring buffer policy={policy!r} must be one of {POLICIES}")
        self.capacity = int(capacity)
        self.policy = policy
        # Working variables
        self._data = np.zeros(self.capacity, dtype=dtype)
        self.origin = 0
        self.written = 0
        self.consumed = 0
        self.overrun = 0

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def nbytes(self) -> int:
        return self._data.nbytes

    @property
    def oldest(self) -> int:
        """Absolute index of the oldest sample still held."""
        return max(self.origin, self.written - self.capacity)

    @property
    def available(self) -> int:
        """Unread samples held."""
        return self.written - self.consumed

    @property
    def free(self) -> int:
        """Samples that can be written without touching unread ones."""
        return self.capacity - self.available

    def write(self, samples: np.ndarray) -> int:
        """Append samples; returns how many unread samples were overwritten (policy ``overwrite``)."""
        samples = np.asarray(samples).ravel()
        n = samples.size
        lost = max(0, n - self.free)
        if lost and self.policy == "error":
            raise InputError(
                f"ring buffer overrun: writing {n} samples with {self.free} free "
                f"(capacity {self.capacity}); read faster or use a larger capacity")
        if n > self.capacity:  # only the newest `capacity` samples can survive
            samples = samples[n - self.capacity:]
        start = (self.written + n - samples.size) % self.capacity
        first = min(samples.size, self.capacity - start)
        self._data[start:start + first] = samples[:first]
        self._data[: samples.size - first] = samples[first:]
        self.written += n
        if lost:
            self.consumed += lost
            self.overrun += lost
        return lost

    def peek(self, start: int, n: int) -> np.ndarray:
        """Copy of samples ``[start, start + n)`` (absolute indices, still held, read or not)."""
        if start < self.oldest or start + n > self.written:
            raise InputError(
                f"samples [{start}, {start + n}) are not held (held: [{self.oldest}, {self.written}))")
        return self._data[(start + np.arange(n)) % self.capacity]

    def gather(self, index: np.ndarray) -> np.ndarray:
        """Samples at absolute indices (any shape): the vectorised frame extractor."""
        index = np.asarray(index)
        if index.size and (index.min() < self.oldest or index.max() >= self.written):
            raise InputError("gather: some indices are outside the samples the ring buffer holds")
        return self._data[index % self.capacity]

    def frames(self, start: int, count: int, length: int, hop: int) -> np.ndarray:
        """``count`` frames of ``length`` samples, ``hop`` apart, from absolute index ``start``:
        (count, length). A read-only view when the span does not wrap around the end, else a copy."""
        stop = start + (count - 1) * hop + length
        if start < self.oldest or stop > self.written:
            raise InputError(
                f"frames over [{start}, {stop}) are not held (held: [{self.oldest}, {self.written}))")
        begin = start % self.capacity
        if begin + (stop - start) <= self.capacity:
            if count == 1:
                return self._data[None, begin:begin + length]
            step = self._data.strides[0]
            return as_strided(self._data[begin:], shape=(count, length), strides=(hop * step, step),
                              writeable=False)
        index = start + hop * np.arange(count)[:, None] + np.arange(length)[None, :]
        return self._data[index % self.capacity]

    def read(self, n: int) -> np.ndarray:
        """Consume and return the next ``n`` unread samples (fewer if fewer are available)."""
        n = min(int(n), self.available)
        out = self.peek(self.consumed, n)
        self.consumed += n
        return out

    def discard_until(self, index: int) -> None:
        """Mark every sample before absolute ``index`` as consumed."""
        self.consumed = max(self.consumed, min(int(index), self.written))

    def reset(self, origin: int = 0) -> None:
        """Empty the buffer; the next sample written gets absolute index ``origin``."""
        self._data[:] = 0
        self.origin = self.written = self.consumed = int(origin)
        self.overrun = 0
