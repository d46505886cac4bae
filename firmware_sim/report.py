"""Reporting a stream run on the host: event log, status line, summary text, JSON, plot.

:class:`EventLog` writes one JSON object per line and flushes each line, so a reader (or a crash)
only ever sees whole events. :class:`Trace` keeps what a plot needs in bounded form (per-block
min/max of the signal, one row per decision). JSON reports go through ``edgecnn.fileio.write_json``
(temporary file, then rename). Matplotlib is imported only by :func:`plot_stream` (Agg backend).

Device side: no TensorFlow.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from edgecnn.errors import ConfigError
from edgecnn.fileio import save_figure
from firmware_sim.decisions import UNKNOWN, UNKNOWN_NAME, Decision, Event, quantise_probabilities, state_name
from firmware_sim.sources import Block


class EventLog:
    """Events as JSON lines, each flushed as it happens."""

    def __init__(self, path: str | Path, *, fields: dict | None = None) -> None:
        self.path = Path(path)
        self.fields = dict(fields or {})
        """Added to every line (the stream command records the bundle digest, so each event says
        which model raised it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (lives as long as the run)

    def __call__(self, event: Event) -> None:
        self.write(event.to_json())

    def write(self, record: dict) -> None:
        self._fh.write(json.dumps({**record, **self.fields}) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class DecisionLog:
    """Every decision as a JSON line (``--decisions``): time, window, probabilities, vote, valid,
    state (and the recording of a replayed folder, the sensor of a fleet). Lines are buffered and flushed at most
    ``flush_s`` seconds apart (wall clock) and on close (a stream ended by SIGINT/SIGTERM closes it)."""

    def __init__(self, path: str | Path, classes: list[str], fs: float, *, flush_s: float = 0.5) -> None:
        self.path = Path(path)
        self.classes = list(classes)
        self.fs = float(fs)
        self.flush_s = float(flush_s)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (lives as long as the run)
        self._flushed = time.monotonic()

    def __call__(self, decision: Decision, recording: str | None = None) -> None:
        record = {} if decision.sensor is None else {"sensor": decision.sensor}
        record |= {"decision": decision.index, "time_s": round(decision.sample_index / self.fs, 6),
                  "window_start": decision.window_start, "window_end": decision.sample_index,
                  "probabilities": [round(float(p), 6) for p in decision.probabilities],
                  "argmax": self._argmax(decision),
                  "valid": decision.valid, "state": state_name(self.classes, decision.state)}
        if decision.reason:
            record["reason"] = decision.reason
        if recording is not None:
            record["recording"] = recording
        self._fh.write(json.dumps(record) + "\n")
        now = time.monotonic()
        if now - self._flushed >= self.flush_s:
            self._fh.flush()
            self._flushed = now

    def _argmax(self, decision: Decision) -> str | None:
        """The decision's vote; for an invalid decision, the argmax of its probabilities if finite."""
        if decision.vote != UNKNOWN:
            return self.classes[decision.vote]
        if decision.probabilities.size and np.all(np.isfinite(decision.probabilities)):
            return self.classes[int(np.argmax(quantise_probabilities(decision.probabilities)))]
        return None

    def close(self) -> None:
        self._fh.close()


class Trace:
    """Bounded record of a run for plotting: signal envelope per block, one row per decision."""

    def __init__(self) -> None:
        self.block_index: list[int] = []
        self.block_min: list[float] = []
        self.block_max: list[float] = []
        self.decisions: list[tuple[int, float, float, int, bool]] = []

    def watch(self, blocks):
        """Pass blocks through, recording each block's min and max."""
        for block in blocks:
            self.add_block(block)
            yield block

    def add_block(self, block: Block) -> None:
        finite = block.samples[np.isfinite(block.samples)]
        if finite.size:
            self.block_index.append(block.t_sample_index)
            self.block_min.append(float(finite.min()))
            self.block_max.append(float(finite.max()))

    def add_decision(self, decision: Decision, target: int) -> None:
        smoothed = np.nan if decision.smoothed is None else float(decision.smoothed[target])
        self.decisions.append((decision.sample_index, float(decision.probabilities[target]), smoothed,
                               decision.state, decision.valid))


def plot_stream(path: str | Path, trace: Trace, events: list[Event], *, fs: float, classes: list[str],
                target: int, title: str = "", onset_s: float | None = None) -> Path:
    """Signal envelope, p(target), smoothed p and state, and events on one time axis (PNG).

    ``onset_s``: when the true fault onset is known (a synthetic source's ``onset``), a black dotted
    line marks it on both axes, so the detection delay reads off the plot."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("--plot needs matplotlib, which this environment lacks; install it or "
                          "drop --plot") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (ax_sig, ax_p, ax_s) = plt.subplots(3, 1, sharex=True, figsize=(11, 7.5), height_ratios=(1, 1.3, 0.7))
    t_blocks = np.asarray(trace.block_index, dtype=float) / fs
    ax_sig.fill_between(t_blocks, trace.block_min, trace.block_max, step="post", color="0.35", lw=0)
    ax_sig.set_ylabel("signal")
    ax_sig.set_title(title or "edgecnn stream")
    if trace.decisions:
        rows = np.asarray(trace.decisions, dtype=float)
        t = rows[:, 0] / fs
        valid = rows[:, 4].astype(bool)
        name = classes[target]
        ax_p.plot(t[valid], rows[valid, 1], ".", ms=3, color="tab:blue", label=f"p({name})")
        ax_p.plot(t, rows[:, 2], "-", color="tab:orange", label=f"smoothed p({name})")
        if (~valid).any():
            ax_p.plot(t[~valid], np.full((~valid).sum(), -0.05), "x", color="k", ms=4, label="invalid")
        # The state (unknown = -1) from the first decision on; unknown before it.
        states = rows[:, 3]
        ax_s.step(np.concatenate(([0.0], t)), np.concatenate(([UNKNOWN], states)), where="post", color="tab:red")
        unknown = np.concatenate(([True], states == UNKNOWN))
        edges = np.concatenate(([0.0], t))
        for i in np.flatnonzero(unknown):
            end = edges[i + 1] if i + 1 < edges.size else edges[-1]
            if end > edges[i]:
                ax_s.axvspan(edges[i], end, color="0.85", lw=0)
    ax_s.set_yticks(range(-1, len(classes)), [UNKNOWN_NAME, *classes])
    ax_s.set_ylim(-1.5, len(classes) - 0.5)
    ax_s.set_ylabel("state")
    if onset_s is not None:
        for ax in (ax_sig, ax_p):
            ax.axvline(onset_s, color="k", ls=":", lw=1.5, label="true onset" if ax is ax_p else None)
        ax_sig.annotate("true onset", (onset_s, 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                        ha="right", va="top")
    for event in events:
        for ax in (ax_sig, ax_p, ax_s):
            ax.axvline(event.time_s, color="tab:green", ls="--", lw=1)
        ax_p.annotate(f"{event.previous}->{event.state}", (event.time_s, 1.05), fontsize=8, color="tab:green")
    ax_p.set_ylim(-0.1, 1.15)
    ax_s.set_xlabel("stream time (s, from the sample count)")
    ax_p.set_ylabel("probability")
    ax_p.legend(loc="center left", fontsize=8)
    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi=110)
    finally:
        plt.close(fig)


def format_summary(result: dict) -> str:
    """The end-of-run summary as a few human-readable lines."""
    t, f = result["timing"], result["faults"]
    lines = [
        f"stream: {t['stream_s']:.2f} s of signal in {t['processing_s']:.3f} s of processing: "
        f"real-time factor {t['realtime_factor']:.1f}x, CPU load {100 * (t['cpu_load'] or 0):.2f} %",
        f"blocks: {t['blocks']} (p50 {t['block_ms_p50']} ms, p99 {t['block_ms_p99']} ms, worst "
        f"{t['block_ms_worst']} ms), deadline misses {t['deadline_misses']}",
        f"decisions: {result['decisions']} ({result['invalid_decisions']} invalid), latency p50 "
        f"{t['decision_latency_ms_p50']} ms, worst {t['decision_latency_ms_worst']} ms",
    ]
    if "recordings" in result:
        lines.append(f"recordings: {len(result['recordings'])}")
        lines += [f"  {r['recording']} ({r['seconds']:.2f} s): {decided_text(r)}" for r in result["recordings"]]
    else:
        lines.append(decided_text(result))
    if result.get("interrupted"):
        lines.append(f"interrupted by {result['interrupted']}: the figures cover the stream up to then")
    lines += [
        "faults: " + (", ".join(f"{k} {v}" for k, v in f.items() if v) or "none"),
        f"events: {len(result['events'])}",
    ]
    lines += [f"  t={e['time_s']:.3f} s (sample {e['sample_index']}): {e['from']} -> {e['to']} "
              f"(p {e['p_smoothed']:.3f})" + (f" [{e['recording']}]" if "recording" in e else "")
              for e in result["events"]]
    return "\n".join(lines)


def decided_text(summary: dict) -> str:
    """Final state, share of decisions per class, time in each state, first decision and state."""
    if summary.get("no_decision"):
        return f"{summary['no_decision']}; final state {summary['state']}"
    share = ", ".join(f"{c} {100 * v:.1f} %" for c, v in summary["decision_share"].items() if v is not None)
    held = ", ".join(f"{c} {v:.2f} s" for c, v in summary["state_seconds"].items() if v)
    first = summary["first_state_s"]
    return (f"final state {summary['state']}; decisions per class: {share or 'none valid'}; time in state: "
            f"{held}; first decision at {summary['first_decision_s']:.3f} s, first state at "
            + (f"{first:.3f} s" if first is not None else "never (no confident decision)"))
