"""Sensors per core that meet their deadlines: the p99 block time of a fleet against the block period.

``bench_multi.py`` measures throughput (sensors one core keeps up with at 100 % load, on average);
a gateway needs every block of every sensor done within its period (256 samples at 12800 Hz:
20 ms), and the blocks that carry a decision (every 14 frames, about one block in 12) also carry
the inference of every sensor. For N sensors, ``StreamRuntime(n_sensors=N)`` (edge int8 on LiteRT, one
thread, the bundle's policy) processes ``--seconds`` of synchronised blocks as fast as it can;
the figures are the p50, p99 and worst block time, the deadline misses, and the largest N whose
p99 stays under the period: the capacity to size ``--sensors`` by. Each N runs with every sensor
deciding in the same block and with staggered decisions (``stagger=True``, what ``edgecnn stream
--sensors`` uses: sensor i decides at its own phase i % every_frames). The machine is shared: the
load average at the start and end is printed with the figures.

    python benchmarks/bench_fleet_capacity.py [BUNDLE] [--sensors 25,50,100,200,400,800,1200] [--seconds 10]

Without BUNDLE: the edge bundle ``benchmarks/bundles.py`` trains (what ``make bench`` runs).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import figure, write_results  # noqa: E402
from edgecnn.synth import render_stream  # noqa: E402
from export.bundle import load_bundle  # noqa: E402
from firmware_sim.interpreters import open_interpreter  # noqa: E402
from firmware_sim.runtime import StreamRuntime  # noqa: E402
from firmware_sim.sources import rotated_blocks  # noqa: E402

BLOCK = 256


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bundle", nargs="?", help="edge bundle (default: train one with benchmarks/bundles.py)")
    ap.add_argument("--sensors", default="25,50,100,200,400,800,1200")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if args.bundle is None:
        from benchmarks.bundles import ensure_bundle

        args.bundle = ensure_bundle("edge")
    bundle = load_bundle(args.bundle)
    period_ms = 1000.0 * BLOCK / bundle.cfg.fs
    # The cost does not depend on what the machines do: one 30 s machine (fault at 15 s), rotated.
    signal = render_stream(30.0, seed=0, fault_onset_s=15.0, fs=bundle.cfg.fs)
    lines = [f"bundle {args.bundle}; blocks of {BLOCK} samples (period {period_ms:.1f} ms); {args.seconds:g} s per "
             f"run; max batch {args.max_batch}; load average at start {os.getloadavg()[0]:.1f}"]
    print(lines[0], flush=True)
    capacity = {False: 0, True: 0}
    with open_interpreter("litert", bundle) as interp:
        for n in (int(x) for x in args.sensors.split(",")):
            for stagger in (False, True):  # the same N both ways, one after the other (same machine load)
                rt = StreamRuntime(bundle.cfg, bundle.classes, interp, n_sensors=n, policy=bundle.decision_policy,
                                   max_batch=args.max_batch, stagger=stagger)
                rt.run(rotated_blocks(signal, n, block=BLOCK, total=int(args.seconds * bundle.cfg.fs)))
                t = rt.timing.summary()
                meets = t["block_ms_p99"] < period_ms
                if meets:
                    capacity[stagger] = max(capacity[stagger], n)
                line = (f"{n:4d} sensors, {'staggered' if stagger else 'together'}: block p50 {t['block_ms_p50']:7.2f} "
                        f"ms, p99 {t['block_ms_p99']:7.2f} ms, worst {t['block_ms_worst']:7.2f} ms, deadline misses "
                        f"{t['deadline_misses']:4d} of {t['blocks']}, CPU load {100 * t['cpu_load']:5.1f} % -> "
                        f"{'meets' if meets else 'MISSES'} the {period_ms:.0f} ms period at p99")
                print(line, flush=True)
                lines.append(line)
    lines.append(f"capacity (p99 block time under the period): {capacity[True]} sensors per core with staggered "
                 f"decisions, {capacity[False]} with every sensor deciding in the same block "
                 f"(load average at end {os.getloadavg()[0]:.1f})")
    print(lines[-1])
    figure("sensors per core meeting the block deadline at p99 (staggered)", str(capacity[True]), "",
           f"together {capacity[False]}", met=None)
    if args.out:
        write_results(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
