"""Training-window augmentation: the variation real machines show between recordings.

``Augmentation`` adds ``copies`` altered copies of every *training* window (never validation, test or
evaluation windows): a speed change of up to ``speed`` (relative; a tone at f moves to f * (1 + s)) by
exact rational resampling (``scipy.signal.resample_poly``), a random time offset, a gain of up to
``gain_db`` either way and additive white noise at a signal-to-noise ratio drawn from ``snr_db``.

A speed-up needs more source samples than a window holds, and an offset moves the window along its
recording: both take the extra samples from the same recording, the contiguous samples that follow the
window (``WindowSet.contiguous``), and only from windows on the same side of the split. Where the
recording does not go on past the window (the reference pickle's pre-cut rows, the last window of a
recording), the draw is limited to what the window itself holds: slow-downs only, no offset.

Speeds are drawn on a grid of ``SPEED_STEP`` (0.25 %) so that each is an exact ratio 400 / (400 + k);
windows sharing a speed are resampled together. Deterministic for a seed (numpy Generator).
Training side only (scipy).
"""

from __future__ import annotations

import dataclasses
from math import gcd

import numpy as np

from edgecnn.errors import ConfigError

#: Resolution of the speed changes: s = k * SPEED_STEP, resampled by the exact ratio 400 / (400 + k).
SPEED_STEP = 0.0025
#: Source samples past the ones a speed change strictly needs, for the resampling filter's tail
#: (its half-length is 10 source samples at these ratios).
FILTER_MARGIN = 16
#: Windows resampled per call (bounds the memory of the gathered sources).
CHUNK = 256


@dataclasses.dataclass(frozen=True, kw_only=True)
class Augmentation:
    """How training windows are varied; ``copies=0`` turns augmentation off."""

    copies: int = 2
    """Altered copies added per training window."""
    speed: float = 0.03
    """Largest relative speed change either way (0.03: a 30 Hz shaft runs at 29.1 to 30.9 Hz)."""
    gain_db: float = 6.0
    """Largest gain change either way, in dB."""
    snr_db: tuple[float, float] = (15.0, 40.0)
    """Range of the signal-to-noise ratio of the added white noise, in dB."""
    offset: bool = True
    """Move each copy along its recording by a random number of samples (up to one hop)."""

    def __post_init__(self) -> None:
        if not isinstance(self.copies, int) or self.copies < 0:
            raise ConfigError(f"augmentation copies={self.copies!r} must be an integer >= 0")
        if not 0.0 <= self.speed <= 0.2:
            raise ConfigError(f"augmentation speed={self.speed!r} must be in [0, 0.2]")
        if not 0.0 <= self.gain_db <= 40.0:
            raise ConfigError(f"augmentation gain_db={self.gain_db!r} must be in [0, 40]")
        lo, hi = self.snr_db
        if not lo <= hi:
            raise ConfigError(f"augmentation snr_db={self.snr_db!r} must be (low, high) with low <= high")

    @property
    def enabled(self) -> bool:
        return self.copies > 0

    def to_dict(self) -> dict:
        return {"copies": self.copies, "speed": self.speed, "speed_step": SPEED_STEP, "gain_db": self.gain_db,
                "snr_db": list(self.snr_db), "offset": self.offset}


def speed_ratio(k: int) -> tuple[int, int]:
    """(up, down) of ``resample_poly`` for the speed change s = k * SPEED_STEP (down / up = 1 + s)."""
    base = int(round(1.0 / SPEED_STEP))
    up, down = base, base + int(k)
    common = gcd(up, down)
    return up // common, down // common


def source_samples(k: int, length: int) -> int:
    """Source samples a speed change of k steps needs to give ``length`` output samples."""
    if k == 0:
        return length
    up, down = speed_ratio(k)
    return -(-length * down // up) + FILTER_MARGIN


def change_speed(source: np.ndarray, k: int, length: int) -> np.ndarray:
    """Rows of ``source`` played (1 + k * SPEED_STEP) times as fast, the first ``length`` samples each.

    A tone at f in the source is at f * (1 + k * SPEED_STEP) in the result. ``source`` needs at least
    ``source_samples(k, length)`` samples per row.
    """
    from scipy.signal import resample_poly

    source = np.asarray(source, dtype=np.float32)
    need = source_samples(k, length)
    if source.shape[-1] < need:
        raise ConfigError(f"a speed change of {k * SPEED_STEP:+.4f} needs {need} source samples, "
                          f"got {source.shape[-1]}")
    if k == 0:
        return source[..., :length].copy()
    up, down = speed_ratio(k)
    out = resample_poly(source[..., :need], up, down, axis=-1, padtype="mean")
    return out[..., :length].astype(np.float32)


def augment_windows(windows: np.ndarray, contiguous: np.ndarray | None, hop: int | None, aug: Augmentation,
                    seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(copies * N, L) altered windows and, per row, the index of the window it was made from.

    ``contiguous[i]`` says window i + 1 continues window i by ``hop`` samples (see
    ``WindowSet.contiguous``); those samples are where a speed-up or an offset takes its extra samples.
    """
    windows = np.asarray(windows, dtype=np.float32)
    n, length = windows.shape
    if not aug.enabled or n == 0:
        return np.zeros((0, length), np.float32), np.zeros(0, np.int64)
    hop = int(hop or length)
    if not 1 <= hop <= length:
        raise ConfigError(f"augmentation: hop {hop} must be in [1, window length {length}]")
    follows = np.zeros(n, bool) if contiguous is None else np.asarray(contiguous, bool)
    # Each window's source: itself, then the `hop` samples the next window adds, where it continues.
    extra = np.zeros((n, hop), np.float32)
    if hop and follows.any():
        nxt = np.flatnonzero(follows)
        extra[nxt] = windows[nxt + 1, length - hop:]
    available = np.where(follows, length + hop, length)

    rng = np.random.default_rng(seed)
    origin = np.tile(np.arange(n), aug.copies)
    total = origin.size
    k_max = int(np.floor(aug.speed / SPEED_STEP + 1e-9))
    # Each copy's speed: uniform over the steps its source can feed (a speed-up needs samples past
    # the window; no speed change is always possible).
    ks = np.arange(-k_max, k_max + 1)
    needs = np.array([source_samples(int(k), length) for k in ks])
    feasible = needs[None, :] <= available[origin][:, None]
    pick = np.floor(rng.uniform(0.0, 1.0, total) * feasible.sum(axis=1)).astype(np.int64)
    choice = np.argmax(np.cumsum(feasible, axis=1) > pick[:, None], axis=1)
    steps, need = ks[choice], needs[choice]
    slack = available[origin] - need
    offsets = (np.floor(rng.uniform(0.0, 1.0, total) * (slack + 1)).astype(np.int64) if aug.offset
               else np.zeros(total, np.int64))
    gains = 10.0 ** (rng.uniform(-aug.gain_db, aug.gain_db, total) / 20.0)
    snrs = rng.uniform(aug.snr_db[0], aug.snr_db[1], total)

    out = np.empty((total, length), np.float32)
    for k in np.unique(steps):
        rows = np.flatnonzero(steps == k)
        span = source_samples(int(k), length)
        for start in range(0, rows.size, CHUNK):
            part = rows[start:start + CHUNK]
            src_rows = origin[part]
            pos = offsets[part, None] + np.arange(span)[None, :]
            source = np.where(pos < length, windows[src_rows[:, None], np.minimum(pos, length - 1)],
                              extra[src_rows[:, None], np.clip(pos - length, 0, hop - 1)])
            out[part] = change_speed(source, int(k), length)
    # Noise at the drawn SNR against each copy's own RMS (before the gain), then the gain.
    rms = np.sqrt(np.mean(np.square(out, dtype=np.float64), axis=1))
    noise_rms = rms / 10.0 ** (snrs / 20.0)
    for start in range(0, total, CHUNK):
        sl = slice(start, start + CHUNK)
        noise = rng.standard_normal((out[sl].shape[0], length), dtype=np.float32)
        out[sl] = (out[sl] + noise * noise_rms[sl, None].astype(np.float32)) * gains[sl, None].astype(np.float32)
    return out, origin




def augment_training(data, idx: np.ndarray, aug: Augmentation, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Altered copies of the windows ``idx`` of a ``WindowSet`` (the training side) and, per copy, the
    index (into ``data``) of the window it was made from: its label and recording are that window's.

    Extra samples come only from windows inside ``idx`` (``WindowSet.subset`` keeps a window's
    continuation only when the next window is in the subset too), so no copy holds a sample of the
    validation or test side.
    """
    idx = np.asarray(idx, dtype=np.int64)
    part = data.subset(idx)
    out, origin = augment_windows(part.windows, part.contiguous, data.hop, aug, seed)
    return out, idx[origin]


__all__ = ["Augmentation", "SPEED_STEP", "augment_training", "augment_windows", "change_speed", "source_samples",
           "speed_ratio"]
