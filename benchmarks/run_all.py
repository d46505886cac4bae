"""Run every benchmark script in this folder and record its output under benchmarks/results/.

`make bench` runs this. Each script prints its own medians and ratios against a baseline measured in the
same run; this runner stores each output with the command, date and machine, and prints them all.
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
    failed = 0
    for script in scripts:
        cmd = [sys.executable, str(script.relative_to(HERE.parent))]
        print(f"== {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True)
        took = time.perf_counter() - start
        print(proc.stdout, end="")
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
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
