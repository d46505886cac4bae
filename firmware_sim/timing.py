"""Timing: each block's processing time against its period, decision latency, CPU load.

Durations are passed in (the runtime measures them with ``time.perf_counter``); the stream clock
is the sample count. Memory stays flat however long the run: percentiles come from a fixed
log-spaced histogram (``BINS_PER_DECADE`` bins per decade, so p50/p99 are exact to about 1 %),
the worst case and the sums are exact.

Device side: numpy only.
"""

from __future__ import annotations

import math

import numpy as np

BINS_PER_DECADE = 200
LOW_S, HIGH_S = 1e-7, 1e3


class LogHistogram:
    """Counts of durations in log-spaced bins between ``LOW_S`` and ``HIGH_S`` seconds."""

    def __init__(self) -> None:
        self._decades = math.log10(HIGH_S / LOW_S)
        # A list, not an array: add() runs once per block, and a list item costs a fifth of an
        # array item to update.
        self._counts = [0] * (int(self._decades * BINS_PER_DECADE) + 2)
        self._last = len(self._counts) - 1
        self.count = 0
        self.total = 0.0
        self.worst = 0.0

    def add(self, seconds: float) -> None:
        seconds = float(seconds)
        if seconds < 0.0:
            seconds = 0.0
        self.count += 1
        self.total += seconds
        if seconds > self.worst:
            self.worst = seconds
        self._counts[self._bin(seconds)] += 1

    def _bin(self, seconds: float) -> int:
        if seconds <= LOW_S:
            return 0
        return min(int(math.log10(seconds / LOW_S) * BINS_PER_DECADE) + 1, self._last)

    def quantile(self, q: float) -> float:
        """Approximate q-quantile (geometric centre of its bin), capped by the exact worst case."""
        if self.count == 0:
            return float("nan")
        rank = max(1, math.ceil(q * self.count))
        b = int(np.searchsorted(np.cumsum(self._counts), rank))
        if b == 0:
            return 0.0
        centre = LOW_S * 10.0 ** ((b - 0.5) / BINS_PER_DECADE)
        return min(centre, self.worst)


class StreamTiming:
    """Per-block load and deadlines plus decision latency, for a stream at ``fs``."""

    def __init__(self, fs: float) -> None:
        self.fs = float(fs)
        self.reset()

    def reset(self) -> None:
        self.blocks = LogHistogram()
        self.latency = LogHistogram()
        self.samples = 0
        self.misses = 0

    def record_block(self, n_samples: int, seconds: float) -> bool:
        """One block processed in ``seconds``; returns True when it missed its deadline (period)."""
        self.samples += int(n_samples)
        self.blocks.add(seconds)
        missed = seconds > n_samples / self.fs
        self.misses += missed
        return missed

    def record_decision(self, waited_samples: int, seconds: float) -> None:
        """A decision taken ``seconds`` into its block's processing, ``waited_samples`` after the
        window's last sample arrived (it sat in the block until the block was delivered)."""
        self.latency.add(waited_samples / self.fs + seconds)

    @property
    def stream_seconds(self) -> float:
        return self.samples / self.fs

    @property
    def cpu_load(self) -> float:
        """Processing time over stream time (1.0: the device is exactly saturated)."""
        return self.blocks.total / self.stream_seconds if self.samples else float("nan")

    @property
    def realtime_factor(self) -> float:
        """Stream time over processing time (how many times faster than the sensor)."""
        return self.stream_seconds / self.blocks.total if self.blocks.total > 0 else float("inf")

    def summary(self) -> dict:
        """Figures as JSON-ready numbers (None where there is nothing to measure)."""
        ms = 1000.0
        figures = {
            "blocks": self.blocks.count,
            "stream_s": round(self.stream_seconds, 6),
            "processing_s": round(self.blocks.total, 6),
            "realtime_factor": round(self.realtime_factor, 3),
            "cpu_load": round(self.cpu_load, 6),
            "block_ms_p50": round(self.blocks.quantile(0.5) * ms, 4),
            "block_ms_p99": round(self.blocks.quantile(0.99) * ms, 4),
            "block_ms_worst": round(self.blocks.worst * ms, 4),
            "deadline_misses": int(self.misses),
            "decision_latency_ms_p50": round(self.latency.quantile(0.5) * ms, 4),
            "decision_latency_ms_p99": round(self.latency.quantile(0.99) * ms, 4),
            "decision_latency_ms_worst": round(self.latency.worst * ms, 4) if self.latency.count else None,
        }
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in figures.items()}
