"""Many sensors per core: how many 12800 Hz sensors one core serves in real time.

``firmware_sim.runtime.StreamRuntime(n_sensors=N)`` runs N synchronised sensors (blocks of 256 samples of
every sensor together) through one edge int8 model on LiteRT at 4 decisions per second (every 14
frames): frames of all N sensors in one vectorised step, images through ``run_batch``, one
``Decider`` per sensor. Capacity = N x (stream seconds / processing seconds): the sensors one core
keeps up with at 100 % load. Baseline, same run: N independent single-sensor ``StreamRuntime``
loops in turn (capacity = N x their real-time factor). Medians of ``--repeat`` runs.

    python benchmarks/bench_multi.py [--sensors 300] [--seconds 5] [--repeat 5] [--bundle DIR]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import figure

from edgecnn.synth import render_stream
from export.bundle import load_bundle
from firmware_sim.decisions import DecisionPolicy
from firmware_sim.interpreters import open_interpreter
from firmware_sim.runtime import StreamRuntime
from firmware_sim.sources import ArraySource, rotated_blocks

BLOCK = 256
EVERY = 14


def multi_capacity(bundle, interp, signal: np.ndarray, n: int, seconds: float, max_batch: int | None) -> float:
    rt = StreamRuntime(bundle.cfg, bundle.classes, interp, n_sensors=n, policy=DecisionPolicy(every_frames=EVERY),
                       max_batch=max_batch)
    blocks = list(rotated_blocks(signal, n, block=BLOCK, total=int(seconds * bundle.cfg.fs)))
    start = time.perf_counter()
    for block in blocks:
        rt.process(block)
    took = time.perf_counter() - start
    return n * seconds / took


def single_capacity(bundle, interp, signal: np.ndarray, n: int, seconds: float) -> float:
    total = int(seconds * bundle.cfg.fs)
    offsets = (np.arange(n) * signal.size) // n
    sources = [ArraySource(np.roll(signal, -int(o))[:total], bundle.cfg.fs, block=BLOCK) for o in offsets]
    start = time.perf_counter()
    for source in sources:
        StreamRuntime(bundle.cfg, bundle.classes, interp, policy=DecisionPolicy(every_frames=EVERY)).run(
            source.blocks())
    return n * seconds / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", type=int, default=300, help="sensors in the measured run (300)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds of signal per sensor (5)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions, interleaved; medians (5)")
    parser.add_argument("--bundle", help="edge bundle (default: train one with benchmarks/bundles.py)")
    args = parser.parse_args(argv)
    if args.bundle is None:
        from bundles import ensure_bundle

        args.bundle = ensure_bundle("edge")
    bundle = load_bundle(args.bundle)
    signal = render_stream(30.0, seed=0, fault_onset_s=15.0)
    n = args.sensors
    results: dict[str, float] = {}
    with open_interpreter("litert", bundle) as interp:
        interp.run(np.zeros(bundle.cfg.input_shape, dtype=np.float32))
        # Warm-up: the first fleet runtime plans the batched model.
        multi_capacity(bundle, interp, signal, n, 1.0, None)
        n_single = min(n, 20)
        variants = {"batch all": None, "batch 8": 8, "batch 1": 1}
        runs: dict[str, list[float]] = {label: [] for label in (*variants, "single")}
        for _ in range(args.repeat):  # interleaved: every variant sees the same machine load
            for label, max_batch in variants.items():
                runs[label].append(multi_capacity(bundle, interp, signal, n, args.seconds, max_batch))
            runs["single"].append(single_capacity(bundle, interp, signal, n_single, args.seconds))
        for label in variants:
            results[label] = float(np.median(runs[label]))
            print(f"multi-sensor runtime, {n} sensors, inference {label:9s}: {results[label]:7.0f} sensors per core "
                  f"(runs: {', '.join(f'{r:.0f}' for r in runs[label])})")
        single = float(np.median(runs["single"]))
        print(f"baseline, {n_single} single-sensor StreamRuntime loops in turn: {single:7.0f} sensors per core "
              f"(runs: {', '.join(f'{r:.0f}' for r in runs['single'])})")
    best_label = max(results, key=results.get)
    best = results[best_label]
    print(f"best: {best_label}: {best:.0f} sensors per core, {best / single:.1f}x the single-sensor loops")
    figure("sensors per core, edge int8 LiteRT, 4 decisions/s, 12800 Hz", f"{best:.0f} ({best_label})",
           ">= 300", f"single-sensor loops {single:.0f}", f"{best / single:.1f}x", best >= 300)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
