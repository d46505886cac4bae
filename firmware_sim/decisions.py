"""Decisions: when to classify, and when the state changes (events), in integer arithmetic.

Configuration (:class:`DecisionPolicy`) apart from working state (:class:`Decider`), as
micro_speech's RecognizeCommands. The state is ``unknown`` until the first confident decision and
falls back to ``unknown`` when the evidence for the current state is gone. The rule, written once
(docs/firmware_sim.md gives the same rule as the C port's reference):

1. A decision is taken every ``every_frames`` frames once a full image exists.
2. Each decision's probabilities become integers ``q = round(p * 256)`` (an int8 softmax output
   with scale 1/256 and zero point -128 gives ``q = output + 128`` exactly); its vote is the argmax
   of ``q`` (lowest index on a tie). An *invalid* decision (its window touched a fault, or the
   probabilities are not finite) votes for no class and adds 0 to every sum.
3. The last ``smooth`` (n) decisions sit in a ring with integer running sums: ``votes[c]`` (how many
   voted c) and ``sums[c]`` (sum of ``q[c]``); a decision leaving the ring is subtracted exactly,
   so nothing drifts however long the stream.
4. Class ``c`` is *supported* when the ring is full, ``votes[c] >= agree`` (k) and
   ``sums[c] >= threshold_q * n`` (the mean of ``q[c]`` over the n decisions, invalid ones
   counting 0, reaches ``threshold_q = round(threshold * 256)``). ``2 * agree > smooth``, so at
   most one class is supported.
5. Entering: a supported class ``c`` different from the state becomes the state when the state has
   lasted ``min_dwell`` decisions (from ``unknown`` too). Holding (hysteresis: weaker than
   entering): the state holds while it has a majority of the ring's votes (``2 * votes[state] >
   n``). Leaving to ``unknown``: every decision at which it does not hold adds 1 to ``doubt`` (a
   decision at which it holds sets it to 0); at ``doubt == unknown_after`` the state becomes
   ``unknown``.
6. Every state change is one :class:`Event` stamped with the sample index of the window's end.

Device side: numpy only; the stream clock is the sample count (time is derived from it).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np

from edgecnn.config import SpectrogramConfig
from edgecnn.errors import ConfigError

#: Probabilities as integers 0..PROB_SCALE (an int8 softmax output + 128 is exactly this).
PROB_SCALE = 256
#: The state before the first confident decision, and after the evidence for a state is gone.
UNKNOWN = -1
UNKNOWN_NAME = "unknown"
#: The policy's fields as they appear in a bundle manifest's ``decision_policy`` section.
POLICY_FIELDS = ("every_frames", "smooth", "agree", "threshold", "min_dwell", "unknown_after")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecisionPolicy:
    """How often to decide and how to turn probabilities into a stable state (integer rule)."""

    every_frames: int = 14
    """Frames between decisions (14 frames of 224 samples at 12800 Hz: 0.245 s)."""
    smooth: int = 8
    """n: decisions in the ring."""
    agree: int = 8
    """k: votes (argmax) of the last n decisions a class needs (2k > n)."""
    threshold: float = 0.6
    """Mean probability of the class over the last n decisions (invalid ones count 0)."""
    min_dwell: int = 4
    """Decisions a state lasts at least before another class can replace it."""
    unknown_after: int = 16
    """Consecutive decisions without a majority of votes for the state before it falls back to unknown."""

    def __post_init__(self) -> None:
        for name in ("every_frames", "smooth", "agree", "unknown_after"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"decision policy: {name}={value!r} must be an integer >= 1")
        if not isinstance(self.min_dwell, int) or isinstance(self.min_dwell, bool) or self.min_dwell < 0:
            raise ConfigError(f"decision policy: min_dwell={self.min_dwell!r} must be an integer >= 0")
        if not (self.agree <= self.smooth and 2 * self.agree > self.smooth):
            raise ConfigError(f"decision policy: agree={self.agree} must be more than half of smooth="
                              f"{self.smooth} and at most smooth (k of n, one class at a time)")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"decision policy: threshold={self.threshold!r} must be a probability in (0, 1]")

    @property
    def threshold_q(self) -> int:
        """The threshold in probability units of 1/PROB_SCALE (what the integer rule compares)."""
        return int(round(self.threshold * PROB_SCALE))

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in POLICY_FIELDS}

    @classmethod
    def from_dict(cls, data: Any, where: str = "decision policy") -> DecisionPolicy:
        """A policy from a manifest section (its other keys, e.g. ``chosen_by``, are ignored)."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected an object, got {type(data).__name__}")
        missing = [name for name in POLICY_FIELDS if name not in data]
        if missing:
            raise ConfigError(f"{where}: missing {missing}")
        try:
            return cls(**{name: data[name] for name in POLICY_FIELDS})
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None

    def replace(self, **changes: Any) -> DecisionPolicy:
        """This policy with the fields given (``None`` values keep this policy's)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def describe(self, cfg: SpectrogramConfig | None = None) -> str:
        every = f"{self.every_frames} frames"
        if cfg is not None:
            every += f" ({self.every_frames * cfg.frame_period_s:.3f} s)"
        return (f"decide every {every}; a state needs {self.agree} of the last {self.smooth} decisions and "
                f"a mean probability >= {self.threshold:g}; dwell {self.min_dwell}; unknown after "
                f"{self.unknown_after} decisions without a majority")


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


def quantise_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """Probabilities as integers 0..PROB_SCALE (int32)."""
    q = np.rint(np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0) * PROB_SCALE)
    return q.astype(np.int32)


@dataclasses.dataclass(frozen=True)
class Decision:
    """One classification of the window ``[window_start, sample_index)``."""

    index: int
    window_start: int
    sample_index: int
    probabilities: np.ndarray
    smoothed: np.ndarray | None
    """Mean probability per class over the ring (sums / n / PROB_SCALE); None for an invalid decision."""
    state: int
    """The state after this decision: a class index or UNKNOWN (-1)."""
    valid: bool
    reason: str = ""
    vote: int = UNKNOWN
    """argmax of the integer probabilities; UNKNOWN for an invalid decision."""
    sensor: int | None = None
    """The sensor of a fleet (``StreamRuntime(n_sensors=N)``, N > 1); None for a lone sensor."""


@dataclasses.dataclass(frozen=True)
class Event:
    """A state change, stamped on the stream clock."""

    decision: int
    sample_index: int
    time_s: float
    previous: str
    state: str
    smoothed: float
    """Mean probability (over the ring) of the class entered, or of the state left for unknown."""
    recording: str | None = None
    """The recording of a replayed folder the event happened in."""
    sensor: int | None = None
    """The sensor of a fleet; None for a lone sensor."""

    def to_json(self) -> dict:
        out = {} if self.sensor is None else {"sensor": self.sensor}
        out |= {"event": "state", "decision": self.decision, "sample_index": self.sample_index,
               "time_s": round(self.time_s, 6), "from": self.previous, "to": self.state,
               "p_smoothed": round(self.smoothed, 6)}
        if self.recording is not None:
            out["recording"] = self.recording
        return out


def state_name(classes: list[str], state: int) -> str:
    return UNKNOWN_NAME if state == UNKNOWN else classes[state]


class Decider:
    """The k-of-n integer rule over probability vectors; emits events on state changes and keeps
    what the summary reports (votes per class, time in each state, first decision and state)."""

    def __init__(self, classes: list[str], fs: float, policy: DecisionPolicy | None = None, *,
                 sensor: int | None = None):
        policy = policy if policy is not None else DecisionPolicy()
        # Configuration
        if len(classes) < 2:
            raise ConfigError(f"a decider needs at least 2 classes, got {classes}")
        if UNKNOWN_NAME in classes:
            raise ConfigError(f"class name {UNKNOWN_NAME!r} is reserved for the undecided state; "
                              f"rename the class (classes: {classes})")
        self.classes = list(classes)
        self.fs = float(fs)
        self.policy = policy
        self.sensor = sensor  # stamped on decisions and events (a fleet's sensor index)
        self._n_classes = len(classes)
        self._smooth, self._agree = policy.smooth, policy.agree
        self._needed = policy.threshold_q * policy.smooth  # sums[c] >= threshold_q * n, in integers
        # Working variables: plain Python integers (the C port's int arrays; numpy's per-call cost
        # would be most of a decision's time with 2 or 3 classes)
        self.reset()

    def reset(self, origin: int = 0) -> None:
        """Back to ``unknown`` with an empty ring; ``origin`` is the sample the stream (or the
        recording) starts at, for the time spent in each state."""
        n, c = self._smooth, self._n_classes
        self._ring_vote = [UNKNOWN] * n
        self._ring_q = [[0] * c for _ in range(n)]
        self._votes = [0] * c
        self._sums = [0] * c
        self._vote_total = [0] * c
        self._state_samples = [0] * (c + 1)  # [-1] is unknown
        self._filled = 0
        self._head = 0
        self.state = UNKNOWN
        self._dwell = 0
        self._doubt = 0
        self.decisions = 0
        self.invalid = 0
        self.origin = int(origin)
        self._last_sample = int(origin)
        self.first_decision_sample: int | None = None
        self.first_state_sample: int | None = None

    @property
    def state_name(self) -> str:
        return state_name(self.classes, self.state)

    def supported(self) -> int:
        """The class the ring supports (rule 4), or UNKNOWN."""
        if self._filled < self._smooth:
            return UNKNOWN
        votes = self._votes
        c = votes.index(max(votes))
        if votes[c] >= self._agree and self._sums[c] >= self._needed:
            return c
        return UNKNOWN

    def update(self, probabilities: np.ndarray, *, window_start: int, sample_index: int,
               valid: bool = True, reason: str = "") -> tuple[Decision, Event | None]:
        """Take one decision; returns it and the event it raised (or None)."""
        probabilities = np.asarray(probabilities, dtype=np.float32).ravel()
        values = probabilities.tolist()
        index = self.decisions
        self.decisions += 1
        sample_index, window_start = int(sample_index), int(window_start)
        if valid and not all(map(math.isfinite, values)):
            valid, reason = False, "non-finite probabilities"
        # Time in the state held since the previous decision.
        if sample_index > self._last_sample:
            self._state_samples[self.state] += sample_index - self._last_sample
            self._last_sample = sample_index
        if self.first_decision_sample is None:
            self.first_decision_sample = sample_index
        # The ring: take out the oldest decision, put in this one (integers, exact).
        n, head, sums = self._smooth, self._head, self._sums
        if self._filled == n:
            old = self._ring_vote[head]
            if old != UNKNOWN:
                self._votes[old] -= 1
            for c, value in enumerate(self._ring_q[head]):
                sums[c] -= value
        else:
            self._filled += 1
        if valid:
            # q = round(p * 256) with p clipped to [0, 1] (round half to even, as numpy's rint)
            q = [round((0.0 if p < 0.0 else 1.0 if p > 1.0 else p) * PROB_SCALE) for p in values]
            vote = q.index(max(q))  # the lowest index on a tie
            self._votes[vote] += 1
            self._vote_total[vote] += 1
            for c, value in enumerate(q):
                sums[c] += value
        else:
            self.invalid += 1
            q = [0] * self._n_classes
            vote = UNKNOWN
        self._ring_q[head] = q
        self._ring_vote[head] = vote
        self._head = (head + 1) % n
        self._dwell += 1
        # The state machine (rule 5).
        event = None
        target = self.supported()
        previous = self.state
        if target != UNKNOWN and target != previous and self._dwell >= self.policy.min_dwell:
            self.state, self._dwell, self._doubt = target, 0, 0
            event = self._event(index, sample_index, previous, target)
        elif previous != UNKNOWN:
            self._doubt = 0 if 2 * self._votes[previous] > n else self._doubt + 1
            if self._doubt >= self.policy.unknown_after:
                self.state, self._dwell, self._doubt = UNKNOWN, 0, 0
                event = self._event(index, sample_index, previous, previous)
        if event is not None and previous == UNKNOWN and self.first_state_sample is None:
            self.first_state_sample = sample_index
        smoothed = np.asarray(sums, dtype=np.float32) / np.float32(n * PROB_SCALE) if valid else None
        decision = Decision(index, window_start, sample_index, probabilities, smoothed, self.state,
                            valid, reason, vote, self.sensor)
        return decision, event

    def _event(self, index: int, sample_index: int, previous: int, measured: int) -> Event:
        p = float(self._sums[measured]) / (self.policy.smooth * PROB_SCALE)
        return Event(index, int(sample_index), sample_index / self.fs, state_name(self.classes, previous),
                     self.state_name, p, sensor=self.sensor)

    def summary(self, end_sample: int | None = None) -> dict[str, Any]:
        """What was decided: share of valid decisions per class, seconds in each state (up to
        ``end_sample``, default the last decision), first decision and first state times."""
        end = self._last_sample if end_sample is None else max(int(end_sample), self._last_sample)
        held = list(self._state_samples)
        held[self.state] += end - self._last_sample
        valid = int(self.decisions - self.invalid)
        names = [*self.classes, UNKNOWN_NAME]

        def seconds(sample: int | None) -> float | None:  # from the stream's (or recording's) start
            return None if sample is None else round((sample - self.origin) / self.fs, 6)

        return {
            "state": self.state_name,
            "decisions": int(self.decisions),
            "invalid_decisions": int(self.invalid),
            "decision_share": {c: (round(float(self._vote_total[i]) / valid, 4) if valid else None)
                               for i, c in enumerate(self.classes)},
            "state_seconds": {name: round(float(held[i if i < len(self.classes) else UNKNOWN]) / self.fs, 6)
                              for i, name in enumerate(names)},
            "first_decision_s": seconds(self.first_decision_sample),
            "first_state_s": seconds(self.first_state_sample),
        }
