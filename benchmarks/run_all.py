"""Run every benchmark script in this folder and record its output under benchmarks/results/.

`make bench` runs this. Each script prints its own medians and ratios against a baseline measured in the
same run; this runner stores each output with the command, date and machine, prints them all, and ends
with one table of every figure (the scripts' ``FIGURE`` lines: figure, value, target, baseline, ratio,
verdict), also stored as benchmarks/results/summary.txt.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.platform()}"


def main() -> int:
    RESULTS.mkdir(exist_ok=True)
    scripts = sorted(p for p in HERE.glob("bench_*.py"))
    # Train the benchmark bundles first (once; cached), so no script's timing includes training.
    subprocess.run([sys.executable, str(HERE / "bundles.py"), "--if-missing", "edge", "seed"], cwd=HERE.parent,
                   check=True, capture_output=True)
    failed = 0
    figures: list[list[str]] = []
    began = time.perf_counter()
    for script in scripts:
        cmd = [sys.executable, str(script.relative_to(HERE.parent))]
        print(f"== {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True)
        took = time.perf_counter() - start
        print("\n".join(line for line in proc.stdout.splitlines() if not line.startswith("FIGURE |")))
        figures += [line.split(" | ")[1:] for line in proc.stdout.splitlines() if line.startswith("FIGURE |")]
        if proc.returncode != 0:
            failed += 1
            print(proc.stderr[-3000:], file=sys.stderr)
            continue
        header = (f"# {script.name}\n# command: python {' '.join(cmd[1:])}\n# date: {time.strftime('%Y-%m-%d %H:%M')}"
                  f"\n# machine: {machine()}\n# took: {took:.0f} s\n")
        out = RESULTS / f"{script.stem.removeprefix('bench_')}.txt"
        tmp = out.with_suffix(".tmp")
        tmp.write_text(header + proc.stdout)
        tmp.replace(out)
    table = format_table(figures)
    print(table)
    print(f"all benchmarks took {time.perf_counter() - began:.0f} s")
    summary = RESULTS / "summary.txt"
    summary.with_suffix(".tmp").write_text(f"# make bench, {time.strftime('%Y-%m-%d %H:%M')}\n# machine: {machine()}"
                                           f"\n{table}\n")
    summary.with_suffix(".tmp").replace(summary)
    return 1 if failed else 0


def format_table(rows: list[list[str]]) -> str:
    """Every figure as a Markdown table: figure, value, target, baseline, ratio, verdict."""
    head = ["figure", "value", "target", "baseline (same run)", "ratio", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = (row + [""] * len(head))[:len(head)]
        lines.append("| " + " | ".join(cell.strip() for cell in cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
