"""Reporting a stream run on the host: event log, status line, summary text, JSON, plot.

:class:`EventLog` writes one JSON object per line and flushes each line, so a reader (or a crash)
only ever sees whole events. :class:`Trace` keeps what a plot needs in bounded form (per-block
min/max of the signal, one row per decision). JSON reports go through ``edgecnn.fileio.write_json``
(temporary file, then rename). Matplotlib is imported only by :func:`plot_stream` (Agg backend).

Device side: no TensorFlow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgecnn.errors import ConfigError
from edgecnn.fileio import save_figure
from firmware_sim.decisions import Decision, Event
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
        self._fh.write(json.dumps({**event.to_json(), **self.fields}) + "\n")
        self._fh.flush()

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
    fig, (ax_sig, ax_p) = plt.subplots(2, 1, sharex=True, figsize=(11, 6), height_ratios=(1, 1.3))
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
        ax_p.step(t, rows[:, 3] == target, where="post", color="tab:red", label=f"state = {name}")
        if (~valid).any():
            ax_p.plot(t[~valid], np.full((~valid).sum(), -0.05), "x", color="k", ms=4, label="invalid")
    if onset_s is not None:
        for ax in (ax_sig, ax_p):
            ax.axvline(onset_s, color="k", ls=":", lw=1.5, label="true onset" if ax is ax_p else None)
        ax_sig.annotate("true onset", (onset_s, 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                        ha="right", va="top")
    for event in events:
        for ax in (ax_sig, ax_p):
            ax.axvline(event.time_s, color="tab:green", ls="--", lw=1)
        ax_p.annotate(f"{event.previous}->{event.state}", (event.time_s, 1.05), fontsize=8, color="tab:green")
    ax_p.set_ylim(-0.1, 1.15)
    ax_p.set_xlabel("stream time (s, from the sample count)")
    ax_p.set_ylabel("probability / state")
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
        f"{t['decision_latency_ms_p50']} ms, worst {t['decision_latency_ms_worst']} ms; final state "
        f"{result['state']}",
        "faults: " + (", ".join(f"{k} {v}" for k, v in f.items() if v) or "none"),
        f"events: {len(result['events'])}",
    ]
    lines += [f"  t={e['time_s']:.3f} s (sample {e['sample_index']}): {e['from']} -> {e['to']} "
              f"(p {e['p_smoothed']:.3f})" for e in result["events"]]
    return "\n".join(lines)
