"""Run every benchmark script in this folder and record its output under benchmarks/results/.

`make bench` runs this. Each script prints its own medians and ratios against a baseline measured in the
same run; this runner stores each output with the command, date and machine, prints them all, and ends
with one table of every figure (the scripts' ``FIGURE`` lines: figure, value, target, baseline, ratio,
verdict), also stored as benchmarks/results/summary.txt.

summary.txt is always built from the stored results (each script's file under results/, with its date),
so a script rerun alone updates it too: ``python benchmarks/run_all.py --summary-only`` rebuilds it
without running anything.
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


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--summary-only"]):
        print("usage: python benchmarks/run_all.py [--summary-only]", file=sys.stderr)
        return 2
    RESULTS.mkdir(exist_ok=True)
    scripts = sorted(p for p in HERE.glob("bench_*.py"))
    if args == ["--summary-only"]:
        print(write_summary(scripts))
        return 0
    # Train the benchmark bundles first (once; cached), so no script's timing includes training.
    subprocess.run([sys.executable, str(HERE / "bundles.py"), "--if-missing", "edge", "seed"], cwd=HERE.parent,
                   check=True, capture_output=True)
    failed = 0
    began = time.perf_counter()
    for script in scripts:
        cmd = [sys.executable, str(script.relative_to(HERE.parent))]
        print(f"== {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True)
        took = time.perf_counter() - start
        print("\n".join(line for line in proc.stdout.splitlines() if not line.startswith("FIGURE |")))
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
    print(write_summary(scripts))
    print(f"all benchmarks took {time.perf_counter() - began:.0f} s")
    return 1 if failed else 0


def write_summary(scripts: list[Path]) -> str:
    """summary.txt from the stored result of each script (its FIGURE lines), with each run's date and machine."""
    figures: list[list[str]] = []
    runs = []
    for script in scripts:
        stored = RESULTS / f"{script.stem.removeprefix('bench_')}.txt"
        if not stored.exists():
            runs.append(f"# {script.name}: no stored result")
            continue
        lines = stored.read_text().splitlines()
        header = {k: v for k, _, v in (line[2:].partition(": ") for line in lines if line.startswith("# "))}
        date, where = header.get("date", "date unknown"), header.get("machine", "machine unknown")
        runs.append(f"# {script.name}: {date} ({where})")
        figures += [line.split(" | ")[1:] for line in lines if line.startswith("FIGURE |")]
    table = format_table(figures)
    summary = RESULTS / "summary.txt"
    tmp = summary.with_suffix(".tmp")
    tmp.write_text("# every figure of the stored benchmark results (python benchmarks/run_all.py [--summary-only])\n"
                   + "\n".join(runs) + f"\n{table}\n")
    tmp.replace(summary)
    return table


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
