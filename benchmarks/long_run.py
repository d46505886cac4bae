"""A day of one sensor, as fast as possible: does the device loop's memory stay flat?

Streams ``--hours`` (default 24) simulated hours of a synthetic sensor through firmware_sim's
``StreamRuntime`` (a bundle's int8 model on LiteRT) and records the process's resident memory at
every simulated hour. The source is synthetic and segmented, so the signal never sits in memory:
a few one-minute pieces of ``edgecnn.synth`` (healthy and faulty machines) are rendered once and
replayed in a fixed cycle (rendering fresh minutes would make the synthesiser, not the device
loop, the bottleneck). Each simulated hour also gets one NaN block, one dropped block and one
repeated block, so the fault paths run all day too.

Prints the resident memory after 1 and after the last hour and their ratio (the acceptance
figure: within 5 %), the real-time factor, and the counters at the end. Exit 1 when memory grew
by more than 5 %. Without ``--bundle`` a tiny model is trained and exported first, in a
subprocess, so this process never imports TensorFlow (as on a device).

    python benchmarks/long_run.py [--hours 24] [--bundle DIR] [--runtime litert]
"""

from __future__ import annotations

import argparse
import gc
import itertools
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from export.bundle import load_bundle  # noqa: E402
from firmware_sim.interpreters import open_interpreter  # noqa: E402
from firmware_sim.runtime import StreamRuntime  # noqa: E402
from firmware_sim.sources import Block, SynthSource, _reblock, inject_faults  # noqa: E402

BLOCK = 256
PIECE_S = 60.0
#: The replayed cycle: (seed, faulty) of each one-minute piece.
CYCLE = ((1, False), (2, False), (3, True), (4, False))
GROWTH_LIMIT = 0.05

TINY_BUNDLE_SCRIPT = r"""
import sys
from pathlib import Path
from export.writer import export_bundle
from tests.util import write_tiny_run
out = Path(sys.argv[1])
export_bundle(write_tiny_run(out / "run"), out / "bundle", formats="tflite_int8", quiet=True)
"""


def resident_bytes() -> int:
    """Current (not peak) resident set size of this process."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build_tiny_bundle(folder: Path) -> Path:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-c", TINY_BUNDLE_SCRIPT, str(folder)], check=True, env=env,
                   capture_output=True)
    return folder / "bundle"


def cycled_pieces(fs: float, n_samples: int) -> Iterator:
    """One-minute synthetic pieces, rendered once, replayed in CYCLE order up to n_samples."""
    pieces = [next(SynthSource(f"synth:duration={PIECE_S:g},seed={seed},faulty={int(faulty)}", fs).segments())
              for seed, faulty in CYCLE]
    left = n_samples
    for piece in itertools.cycle(pieces):
        if left <= 0:
            return
        yield piece[:left]
        left -= piece.size


def hourly_faults(fs: float, hours: int) -> dict[str, list[int]]:
    """Block sequence numbers of one NaN, one dropped and one repeated block per simulated hour."""
    per_hour = int(3600 * fs) // BLOCK
    return {"nan": [h * per_hour + 1000 for h in range(hours)],
            "drop": [h * per_hour + 2000 for h in range(hours)],
            "repeat": [h * per_hour + 3000 for h in range(hours)]}


def checkpointed(blocks: Iterator[Block], fs: float, marks: list[dict]) -> Iterator[Block]:
    """Pass blocks through; at each simulated hour boundary record memory and wall time."""
    per_hour = int(3600 * fs)
    next_mark = per_hour
    start = time.perf_counter()
    for block in blocks:
        if block.t_sample_index >= next_mark:
            gc.collect()
            marks.append({"hour": next_mark // per_hour, "rss_bytes": resident_bytes(),
                          "wall_s": time.perf_counter() - start})
            next_mark += per_hour
        yield block
    gc.collect()
    marks.append({"hour": next_mark / per_hour, "rss_bytes": resident_bytes(),
                  "wall_s": time.perf_counter() - start})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours (default 24)")
    parser.add_argument("--bundle", help="bundle folder (default: train and export a tiny one)")
    parser.add_argument("--runtime", default="litert", help="interpreter (default litert)")
    args = parser.parse_args(argv)
    if args.hours < 2:
        parser.error("--hours must be at least 2 (memory is compared after hour 1 and at the end)")

    with tempfile.TemporaryDirectory() as tmp:
        bundle_dir = Path(args.bundle) if args.bundle else build_tiny_bundle(Path(tmp))
        bundle = load_bundle(bundle_dir)
        fs = bundle.cfg.fs
        n_samples = int(round(args.hours * 3600 * fs))
        faults = hourly_faults(fs, int(args.hours))
        marks: list[dict] = []
        start = time.perf_counter()
        with open_interpreter(args.runtime, bundle) as interp:
            runtime = StreamRuntime(bundle.cfg, bundle.classes, interp)
            blocks = inject_faults(_reblock(cycled_pieces(fs, n_samples), BLOCK), **faults)
            summary = runtime.run(checkpointed(blocks, fs, marks))
        wall = time.perf_counter() - start

    first, last = marks[0], marks[-1]
    growth = last["rss_bytes"] / first["rss_bytes"] - 1.0
    print(f"long run: {args.hours:g} simulated hours of one sensor at {fs:g} Hz, {BLOCK}-sample blocks, "
          f"{args.runtime}, bundle {'(tiny, built here)' if not args.bundle else bundle_dir}")
    print(f"  {'hour':>6} {'RSS MB':>8} {'wall s':>8}")
    for mark in marks:
        print(f"  {mark['hour']:>6g} {mark['rss_bytes'] / 2**20:8.1f} {mark['wall_s']:8.1f}")
    print(f"resident memory after hour 1: {first['rss_bytes'] / 2**20:.1f} MB; after hour {last['hour']:g}: "
          f"{last['rss_bytes'] / 2**20:.1f} MB; growth {100 * growth:+.2f} % (limit {100 * GROWTH_LIMIT:.0f} %)")
    print(f"wall {wall:.0f} s: {args.hours * 3600 / wall:.0f}x real time")
    timing = summary["timing"]
    print(f"counters: samples {summary['samples']}, frames {summary['frames']}, decisions "
          f"{summary['decisions']}, invalid {summary['invalid_decisions']}, events {len(summary['events'])}, "
          f"state {summary['state']}")
    print("faults: " + ", ".join(f"{k} {v}" for k, v in summary["faults"].items()))
    print("timing: " + ", ".join(f"{k} {v}" for k, v in timing.items() if not isinstance(v, (dict, list))))
    ok = abs(growth) <= GROWTH_LIMIT
    print("memory flat: PASS" if ok else "memory flat: FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
