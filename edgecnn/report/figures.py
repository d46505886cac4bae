"""The report's figures: PNG bytes, later embedded in the page as data URIs.

The run directory's PNGs and a stream's ``--plot`` PNG are used as they are (read by
:mod:`edgecnn.report.read`, never re-plotted). Only what no file shows is drawn here, in memory: the
decided state over each of parity's streams, and over a stream result that came without its plot.
matplotlib is imported lazily; where it is not installed (the device-only environment) the figure is
left out and the page says why.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edgecnn.report.read import ReportInputs

NO_MATPLOTLIB = "not drawn: matplotlib is not installed here (pip install matplotlib)"


def plot_missing(inputs: ReportInputs) -> None:
    """Add the timelines no PNG on disk shows to ``inputs.images``: the stream without --plot, parity's streams."""
    classes = inputs.classes
    if not classes:
        return
    wanted: dict[str, list[tuple[str, float, list[dict], str | None]]] = {}
    if inputs.stream is not None and "stream_plot" not in inputs.images:
        duration = (inputs.stream.get("timing") or {}).get("stream_s") or 0.0
        wanted["stream_timeline"] = [("stream", duration, inputs.stream.get("events") or [],
                                      inputs.stream.get("state"))]
    streams = ((inputs.parity or {}).get("stream_level") or {}).get("streams") or []
    if streams:
        wanted["parity_timelines"] = [(f"{i + 1}: {dtype}", s.get("seconds") or 0.0, v.get("events") or [], None)
                                      for i, s in enumerate(streams) for dtype, v in (s.get("variants") or {}).items()]
    for key, rows in wanted.items():
        try:
            inputs.images[key] = plot_state_timelines(rows, classes)
        except ModuleNotFoundError as exc:
            if exc.name != "matplotlib":
                raise
            inputs.notes[key] = NO_MATPLOTLIB


def plot_state_timelines(rows: Sequence[tuple[str, float, list[dict], str | None]], classes: list[str]) -> bytes:
    """PNG bytes: one horizontal band per row, coloured by the decided state over stream time.

    A row is (label, duration s, events as ``Event.to_json()``, final state or None). The state before
    the first event is that event's ``from`` (else the final state, else ``unknown``); ``unknown`` (before
    the first confident decision, or when the evidence for a state is gone) is drawn light grey.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(rows) + 1.2), constrained_layout=True)
    for y, (_label, duration, events, final) in enumerate(rows):
        state = events[0]["from"] if events else (final or "unknown")
        t = 0.0
        for event in [*events, None]:
            end = duration if event is None else float(event["time_s"])
            if state in classes or state == "unknown":
                colour = colours(classes.index(state) % 10) if state in classes else "0.85"
                ax.barh(y, max(0.0, end - t), left=t, height=0.6, color=colour)
            if event is not None:
                ax.plot([end, end], [y - 0.4, y + 0.4], color="black", lw=1.2)
                t, state = end, event["to"]
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("stream time (s)")
    ax.set_xlim(0, max([r[1] for r in rows] + [1e-9]))
    ax.legend(handles=[*[Patch(color=colours(i % 10), label=f"state {c}") for i, c in enumerate(classes)],
                       Patch(color="0.85", label="unknown")],
              loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(classes) + 1, frameon=False, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
