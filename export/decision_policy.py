"""The decision policy a bundle carries, chosen at export from the run's validation data.

``edgecnn train`` keeps the model's probabilities on its validation windows, in recording and time
order (``validation.npz``). From them :func:`choose_policy` builds streams and re-decides them with
the device's own :class:`firmware_sim.decisions.Decider` under a grid of candidate policies:

- a *steady* stream per validation recording (its windows in order): any state entered other than
  the recording's class is a false alarm;
- an *onset* stream per validation recording: a recording of another class (taken in turn), then
  this one; a state other than the first class before the change, or other than the second after
  it, is a false alarm; entering the second class is the detection.

Decisions come every ``every_frames`` frames (0.245 s) while validation windows lie
``window_step`` samples apart (0.78 s without overlap): each window's probabilities stand for the
``round(step / cadence)`` decisions the stream takes over that stretch (a wrong window is then a
burst of wrong decisions, as the overlapping windows of a real stream give). The detection delay is
counted conservatively as one window (the first window wholly after the change) plus the cadence
for every further decision.

The rule (stated in the manifest as ``chosen_by``): among the candidates with no false alarm and no
missed change on these streams and a worst delay within ``delay_budget_s`` (candidates whose full
ring alone would take longer are not tried), the one that asks for the most votes (then the longest
ring), with the lowest threshold that keeps it within budget:
speed beyond the budget buys nothing, agreeing votes buy margin against machines the validation
set did not hold, and a threshold higher than needed would leave a consistent but unconfident
model (every window right at p = 0.6) ``unknown`` on recordings it classifies correctly. When no
candidate meets both budgets (too little validation data, or a weak model), the strictest vote rule
the delay budget allows at the lowest threshold: a missed change leaves the state ``unknown``, the
honest answer, and a threshold tuned on streams that cannot show the budget met would be tuned to
noise; ``meets_budget`` is then false, with that policy's figures (export says so). Class
names are the user's: no class is assumed healthy; every class is the "before" and the "after" of
some stream.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from edgecnn.config import SpectrogramConfig
from firmware_sim.decisions import Decider, DecisionPolicy

#: No false alarm on the validation streams.
FALSE_ALARM_BUDGET = 0
#: Worst detection delay (s) the chosen policy may have on the validation onset streams: a full ring
#: of agreeing decisions must fit in it, so a 3 s recording still reaches its class (n <= 8 at 0.245 s).
DELAY_BUDGET_S = 2.5
#: The candidates: ring length n, votes k of n, threshold (mean probability), unknown_after (x n).
CANDIDATE_SMOOTH = (4, 6, 8, 10, 12)
CANDIDATE_THRESHOLD = (0.55, 0.65, 0.75)
UNKNOWN_AFTER_RINGS = 2


def candidates(base: DecisionPolicy) -> list[DecisionPolicy]:
    out = []
    for n, threshold in itertools.product(CANDIDATE_SMOOTH, CANDIDATE_THRESHOLD):
        for k in sorted({n // 2 + 1, (3 * n + 3) // 4, n}):
            out.append(base.replace(smooth=n, agree=k, threshold=threshold, unknown_after=UNKNOWN_AFTER_RINGS * n))
    return out


def _sequences(validation: dict[str, np.ndarray], repeat: int, subsample: int) -> list[tuple[int, np.ndarray]]:
    """(class, probabilities per decision) of each validation recording, in time order."""
    out = []
    groups = validation["groups"]
    for g in dict.fromkeys(groups.tolist()):  # first-seen order: the recordings' order
        rows = np.flatnonzero(groups == g)[::subsample]
        labels = validation["labels"][rows]
        cls = int(np.bincount(labels).argmax())
        out.append((cls, np.repeat(validation["probabilities"][rows], repeat, axis=0)))
    return out


def _streams(sequences: list[tuple[int, np.ndarray]]) -> list[tuple[np.ndarray, int, int, int | None]]:
    """(probabilities, class before, change index or None, class after) of the steady and onset streams."""
    streams = [(p, c, None, c) for c, p in sequences]
    others: dict[int, list[int]] = {}
    for i, (c, _) in enumerate(sequences):
        others.setdefault(c, []).append(i)
    turn = {c: 0 for c in others}
    for c, p in sequences:
        pool = [i for cls, idx in others.items() if cls != c for i in idx]
        if not pool:
            continue
        before = pool[turn[c] % len(pool)]
        turn[c] += 1
        first_cls, first = sequences[before]
        streams.append((np.concatenate([first, p]), first_cls, len(first), c))
    return streams


def _score(policy: DecisionPolicy, streams, classes: list[str], window_s: float, cadence_s: float) -> dict[str, Any]:
    false_alarms = missed = changes = 0
    delays: list[float] = []
    decisions = 0
    for probs, before, change, after in streams:
        decider = Decider(classes, 1.0, policy)
        detected = change is None
        for i, p in enumerate(probs):
            _, event = decider.update(p, window_start=i, sample_index=i + 1)
            if event is None or decider.state < 0:
                continue
            truth = before if change is None or i < change else after
            if decider.state != truth:
                false_alarms += 1
            elif change is not None and i >= change and not detected:
                detected = True
                delays.append(window_s + (i - change) * cadence_s)
        decisions += len(probs)
        if change is not None:
            changes += 1
            missed += int(not detected)
    return {"false_alarms": false_alarms, "missed": missed, "changes": changes,
            "worst_delay_s": round(max(delays), 3) if delays else None,
            "median_delay_s": round(float(np.median(delays)), 3) if delays else None,
            "stream_hours": round(decisions * cadence_s / 3600.0, 4)}


def choose_policy(validation: dict[str, np.ndarray] | None, cfg: SpectrogramConfig, classes: list[str], *,
                  base: DecisionPolicy | None = None, delay_budget_s: float = DELAY_BUDGET_S) -> dict[str, Any]:
    """The manifest's ``decision_policy`` section: the policy's fields and ``chosen_by``."""
    base = base or DecisionPolicy()
    if validation is None or len(validation["labels"]) == 0:
        return {**base.to_dict(), "chosen_by": {
            "method": "built-in default", "reason": "the run holds no validation probabilities "
                                                    "(trained before edgecnn kept them, or no validation side)"}}
    cadence_s = base.every_frames * cfg.frame_period_s
    step_s = float(validation["window_step"]) / cfg.fs
    repeat = max(1, int(round(step_s / cadence_s)))
    subsample = max(1, int(round(cadence_s / step_s)))
    window_s = cfg.window_samples / cfg.fs
    streams = _streams(_sequences(validation, repeat, subsample))
    # Rings that could meet the delay budget at all (a full ring of agreeing decisions after one window).
    feasible = [p for p in candidates(base) if window_s + (p.smooth - 1) * cadence_s <= delay_budget_s]
    scored = [(policy, _score(policy, streams, classes, window_s, cadence_s)) for policy in feasible]
    meeting = [(p, s) for p, s in scored if s["false_alarms"] <= FALSE_ALARM_BUDGET and s["missed"] == 0
               and (s["worst_delay_s"] is None or s["worst_delay_s"] <= delay_budget_s)]

    def evidence(ps):
        return ps[0].agree, ps[0].smooth, -ps[0].threshold

    if meeting:
        policy, score = max(meeting, key=evidence)
    else:  # the validation streams cannot show the budget met: the strictest vote rule the delay budget
        # allows, at the lowest threshold (a missed change leaves the state unknown, the honest answer;
        # a threshold tuned on streams too few or too short to meet the budget would be tuned to noise)
        policy, score = max(scored, key=evidence)
    return {**policy.to_dict(), "chosen_by": {
        "method": "validation streams re-decided under a grid of policies (export/decision_policy.py)",
        "false_alarm_budget": FALSE_ALARM_BUDGET, "delay_budget_s": delay_budget_s,
        "meets_budget": bool(meeting), "candidates": len(scored), "candidates_meeting_budget": len(meeting),
        "validation_recordings": len({int(g) for g in validation["groups"]}),
        "steady_streams": sum(1 for s in streams if s[2] is None), "onset_streams": score["changes"],
        "decisions_per_window": repeat, **score}}
