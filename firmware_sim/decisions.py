"""Decisions: when to classify, how to smooth, when the state changes (events).

Configuration (:class:`DecisionPolicy`) apart from working state (:class:`Decider`), as
micro_speech's RecognizeCommands. The rule, written once:

1. A decision is taken every ``every_frames`` frames once a full image exists.
2. An *invalid* decision (its window touched a fault) is recorded but never smoothed and never
   raises an event; the state is held.
3. ``smoothed`` is the mean of the last ``smooth`` valid probability vectors; no state change is
   possible until ``smooth`` vectors are held (one noisy window cannot raise an alarm).
4. Hysteresis: with ``c = argmax(smoothed)``, the state moves from ``s`` to ``c != s`` only when
   ``smoothed[c] >= on`` and ``smoothed[s] <= off`` and the state has lasted ``min_dwell``
   decisions. With two classes, on 0.8 / off 0.2 mean: alarm at p(B) >= 0.8, clear at p(B) <= 0.2.
5. Every state change is one :class:`Event` stamped with the sample index of the window's end.

Device side: numpy only; the stream clock is the sample count (time is derived from it).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from edgecnn.config import SpectrogramConfig
from edgecnn.errors import ConfigError


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecisionPolicy:
    """How often to decide and how to turn probabilities into a stable state."""

    every_frames: int = 14
    """Frames between decisions (14 frames of 224 samples at 12800 Hz: 0.245 s)."""
    smooth: int = 6
    """Valid probability vectors averaged (K)."""
    on: float = 0.8
    """Smoothed probability a class needs to become the state."""
    off: float = 0.2
    """Smoothed probability the current state must have fallen to before it is left."""
    min_dwell: int = 4
    """Decisions a state lasts at least before it can change."""
    initial: int = 0
    """Class index of the state at start (class A, healthy)."""

    def __post_init__(self) -> None:
        for name in ("every_frames", "smooth"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"decision policy: {name}={value!r} must be an integer >= 1")
        if not isinstance(self.min_dwell, int) or self.min_dwell < 0:
            raise ConfigError(f"decision policy: min_dwell={self.min_dwell!r} must be an integer >= 0")
        if not 0.0 <= self.off < self.on <= 1.0:
            raise ConfigError(f"decision policy: thresholds off={self.off} < on={self.on} must lie in [0, 1]")


def parse_cadence(text: str, cfg: SpectrogramConfig) -> int:
    """``--decision-every``: ``0.25s`` (seconds, rounded to whole frames) or ``14f``/``14`` frames."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(s|ms|f)?\s*", str(text))
    if not match:
        raise ConfigError(f"--decision-every {text!r} must look like 0.25s, 250ms or 14f (frames)")
    value, unit = float(match.group(1)), match.group(2) or "f"
    if unit == "f":
        if value != int(value) or value < 1:
            raise ConfigError(f"--decision-every {text!r}: a frame count must be an integer >= 1")
        return int(value)
    seconds = value / 1000.0 if unit == "ms" else value
    frames = int(round(seconds / cfg.frame_period_s))
    if frames < 1:
        raise ConfigError(f"--decision-every {text!r} is shorter than one frame "
                          f"({cfg.frame_period_s * 1000:.1f} ms)")
    return frames


@dataclasses.dataclass(frozen=True)
class Decision:
    """One classification of the window ``[window_start, sample_index)``."""

    index: int
    window_start: int
    sample_index: int
    probabilities: np.ndarray
    smoothed: np.ndarray | None
    state: int
    valid: bool
    reason: str = ""


@dataclasses.dataclass(frozen=True)
class Event:
    """A state change, stamped on the stream clock."""

    decision: int
    sample_index: int
    time_s: float
    previous: str
    state: str
    smoothed: float

    def to_json(self) -> dict:
        return {"event": "state", "decision": self.decision, "sample_index": self.sample_index,
                "time_s": round(self.time_s, 6), "from": self.previous, "to": self.state,
                "p_smoothed": round(self.smoothed, 6)}


class Decider:
    """Smoothing and hysteresis over probability vectors; emits events on state changes."""

    def __init__(self, classes: list[str], fs: float, policy: DecisionPolicy | None = None):
        policy = policy if policy is not None else DecisionPolicy()
        # Configuration
        if len(classes) < 2:
            raise ConfigError(f"a decider needs at least 2 classes, got {classes}")
        if not 0 <= policy.initial < len(classes):
            raise ConfigError(f"decision policy: initial={policy.initial} is not a class index of {classes}")
        self.classes = list(classes)
        self.fs = float(fs)
        self.policy = policy
        # Working variables
        self._history = np.zeros((policy.smooth, len(classes)), dtype=np.float64)
        self.reset()

    def reset(self) -> None:
        self._history[:] = 0
        self._filled = 0
        self._head = 0
        self.state = self.policy.initial
        self._dwell = 0
        self.decisions = 0
        self.invalid = 0

    def update(self, probabilities: np.ndarray, *, window_start: int, sample_index: int,
               valid: bool = True, reason: str = "") -> tuple[Decision, Event | None]:
        """Take one decision; returns it and the event it raised (or None)."""
        probabilities = np.asarray(probabilities, dtype=np.float32).ravel()
        index = self.decisions
        self.decisions += 1
        if not valid or not np.all(np.isfinite(probabilities)):
            self.invalid += 1
            reason = reason or "non-finite probabilities"
            return Decision(index, window_start, sample_index, probabilities, None, self.state, False,
                            reason), None
        self._history[self._head] = probabilities
        self._head = (self._head + 1) % self.policy.smooth
        self._filled = min(self._filled + 1, self.policy.smooth)
        smoothed = self._history[: self._filled].mean(axis=0)
        self._dwell += 1
        event = None
        candidate = int(np.argmax(smoothed))
        if (self._filled == self.policy.smooth and candidate != self.state
                and smoothed[candidate] >= self.policy.on and smoothed[self.state] <= self.policy.off
                and self._dwell >= self.policy.min_dwell):
            event = Event(index, int(sample_index), sample_index / self.fs, self.classes[self.state],
                          self.classes[candidate], float(smoothed[candidate]))
            self.state = candidate
            self._dwell = 0
        decision = Decision(index, window_start, sample_index, probabilities, smoothed.astype(np.float32),
                            self.state, True)
        return decision, event
