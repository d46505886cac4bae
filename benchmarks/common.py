"""Shared helpers of the benchmark scripts: medians, and the figure lines run_all.py tabulates.

Every benchmark prints its own readable lines plus one ``FIGURE`` line per figure:
``FIGURE | name | value | target | baseline | ratio`` (text cells); ``benchmarks/run_all.py``
collects them into the table ``make bench`` prints and ``docs/benchmarks.md`` records.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def median_seconds(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls (the machine is shared: medians, not means)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_medians(fns: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median wall time of each function, the repetitions interleaved (a, b, c, a, b, c, ...) so
    that every variant sees the same share of the shared machine's load: the ratios between
    them hold even when the load changes during the run."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def figure(name: str, value: str, target: str, baseline: str = "", ratio: str = "", met: bool | None = None) -> None:
    """Print one FIGURE line (``met``: whether the target is met; None when it is informative)."""
    verdict = "" if met is None else ("met" if met else "MISSED")
    print(" | ".join(["FIGURE", name, value, target, baseline, ratio, verdict]), flush=True)


def write_results(path, lines: list[str]) -> None:
    """Write ``lines`` to the results file ``path`` (folders made) under :func:`results_header`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(results_header() + "\n".join(lines) + "\n")


def results_header(took_s: float | None = None) -> str:
    """The header run_all.py gives a results file: command, date, machine (and how long it took)."""
    import os
    import platform

    lines = [f"# command: python {' '.join(sys.argv)}", f"# date: {time.strftime('%Y-%m-%d %H:%M')} UTC",
             f"# machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"load average {os.getloadavg()[0]:.1f}"]
    if took_s is not None:
        lines.append(f"# took: {took_s:.0f} s")
    return "\n".join(lines) + "\n"
