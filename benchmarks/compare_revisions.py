"""The hot path before and after a change: the same benchmarks from two trees, interleaved, same run.

A refactor of the device loop must not make it slower; the machine is shared and its speed drifts
by more than the difference being looked for, so each benchmark runs alternately from a worktree of
``--base`` (default HEAD, a git revision) and from this tree, ``--rounds`` times, and the figures are
compared as medians over rounds: ``after / before`` for every figure the scripts print (real-time
factors and sensors per core: above 1 is faster). Both trees use this environment's packages and the
same cached bundles (``benchmarks/bundles.py``).

    python benchmarks/compare_revisions.py [--base HEAD] [--rounds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import write_results  # noqa: E402

#: (script, arguments, figures to compare: label -> regular expression with one number group)
BENCHMARKS = [
    ("bench_stream.py", ["--no-loop", "--repeat", "9"], {
        "features, device loop (feed), x real time": r"streaming, deferred \(device loop\):\s+([\d.]+)x",
        "features, eager push, x real time": r"streaming, eager \(push\)\s+:\s+([\d.]+)x",
        "features, envelope, device loop, x real time": r"envelope \(edge default\), deferred:\s+([\d.]+)x",
        "file replay, 1 s pushes, x real time": r"file replay, 1 s pushes:\s+([\d.]+)x",
    }),
    ("bench_stream.py", ["--repeat", "5", "--bundle", "{edge}", "--seed-bundle", "{seed}"], {
        "end to end, edge int8, x real time": r"end to end, edge int8 .*?:\s+([\d.]+)x real time",
        "end to end, seed int8, x real time": r"end to end, seed int8 .*?:\s+([\d.]+)x real time",
    }),
    ("bench_multi.py", ["--bundle", "{edge}", "--repeat", "3"], {
        "300 sensors, batch 8, sensors per core": r"inference batch 8\s+:\s+([\d.]+) sensors",
        "20 lone sensors in turn, sensors per core": r"single-sensor StreamRuntime loops in turn:\s+([\d.]+)",
    }),
]


def run_script(tree: Path, script: str, args: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.run([sys.executable, str(tree / "benchmarks" / script), *args], cwd=tree, env=env,
                          capture_output=True, text=True, check=True)
    return proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default="HEAD", help="git revision to compare against (default HEAD)")
    ap.add_argument("--rounds", type=int, default=3, help="alternations of before and after (default 3)")
    ap.add_argument("--out", type=Path, help="also write the table to this results file")
    args = ap.parse_args()
    from benchmarks.bundles import ensure_bundle

    bundles = {"edge": str(ensure_bundle("edge")), "seed": str(ensure_bundle("seed"))}
    base_rev = subprocess.run(["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    figures: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory(prefix="edgecnn-base-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), args.base], cwd=ROOT, check=True)
        try:
            for round_ in range(args.rounds):
                for script, script_args, patterns in BENCHMARKS:
                    script_args = [a.format(**bundles) for a in script_args]
                    for side, tree in (("before", base), ("after", ROOT)):
                        text = run_script(tree, script, script_args)
                        for label, pattern in patterns.items():
                            match = re.search(pattern, text)
                            if match is None:
                                raise SystemExit(f"{script} ({side}) printed no figure for {label!r}")
                            figures.setdefault(label, {"before": [], "after": []})[side].append(float(match[1]))
                print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr, flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    lines = [f"before: {args.base} ({base_rev}); after: this tree; {args.rounds} alternating rounds; medians "
             f"over rounds (each script's own figure is already a median of its repetitions)",
             f"{'figure':48s} {'before':>10s} {'after':>10s} {'after/before':>13s}"]
    for label, sides in figures.items():
        before, after = statistics.median(sides["before"]), statistics.median(sides["after"])
        lines.append(f"{label:48s} {before:10.1f} {after:10.1f} {after / before:12.2f}x")
    print("\n".join(lines))
    if args.out:
        write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
