"""Fault injection on the device loop: what each fault costs and how fast decisions recover.

Streams 6 s of a synthetic sensor through firmware_sim's ``StreamRuntime`` (a bundle's int8
model on LiteRT, 256-sample blocks, a decision every 14 frames = 0.245 s), once clean and once
per fault scenario (the scenarios of tests/test_stream_faults.py), and prints for each: the
fault counters, the decisions invalidated (of the total), whether every valid decision equals
the clean stream's, and the recovery time from the end of the fault to the end of the first valid
window after it. Markdown, for docs/robustness.md.

    python benchmarks/fault_table.py [--bundle DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.long_run import build_tiny_bundle  # noqa: E402
from export.bundle import load_bundle  # noqa: E402
from firmware_sim.decisions import DecisionPolicy  # noqa: E402
from firmware_sim.interpreters import open_interpreter  # noqa: E402
from firmware_sim.runtime import StreamRuntime  # noqa: E402
from firmware_sim.sources import ArraySource, RawSource, SynthSource, inject_faults  # noqa: E402

BLOCK = 256
EVERY = 14


def _replace(blocks, seqs, make):
    for block in blocks:
        yield dataclasses.replace(block, samples=make(block.samples.copy())) if block.seq in seqs else block


def _inf(samples):
    samples[::2], samples[1::2] = np.inf, -np.inf
    return samples


def scenarios(signal: np.ndarray, fs: float):
    """(name, blocks, runtime kwargs, fault spans in samples, counters to show)."""
    def arr():
        return ArraySource(signal, fs, block=BLOCK).blocks()

    scale = float(np.abs(signal).max()) / 30000
    counts = np.round(signal / scale).astype(np.int16)
    counts[30000:30300], counts[30300:30500] = 32767, -32768
    raw = RawSource(io.BytesIO(counts.tobytes()), fs, scale=scale, block=BLOCK)
    yield ("NaN burst (4 blocks)", _replace(arr(), {60, 61, 62, 63}, lambda s: np.full_like(s, np.nan)), {},
           [(60 * BLOCK, 64 * BLOCK)], ["nonfinite_samples"])
    yield ("Inf burst (2 blocks, +-Inf)", _replace(arr(), {100, 101}, _inf), {}, [(100 * BLOCK, 102 * BLOCK)],
           ["nonfinite_samples"])
    yield ("single NaN sample", inject_faults(arr(), nan=[60]), {}, [(60 * BLOCK + 128, 60 * BLOCK + 129)],
           ["nonfinite_samples"])
    yield ("ADC saturation (500 samples at int16 full scale)", raw.blocks(), {"full_scale": raw.full_scale},
           [(30000, 30500)], ["saturated_samples"])
    yield ("3 dropped blocks (gap, zero-filled)", inject_faults(arr(), drop=[150, 151, 152]), {},
           [(150 * BLOCK, 153 * BLOCK)], ["gaps", "dropped_blocks", "filled_samples"])
    yield ("60 dropped blocks (gap > window: STFT restart)", inject_faults(arr(), drop=range(100, 160)), {},
           [(100 * BLOCK, 160 * BLOCK)], ["gaps", "dropped_blocks", "restarts"])
    yield ("3 repeated blocks", inject_faults(arr(), repeat=[40, 41, 200]), {}, [], ["repeated_blocks"])
    yield ("single-sample blocks + 1 NaN", inject_faults(ArraySource(signal, fs, block=1).blocks(), nan=[12345]), {},
           [(12345, 12346)], ["nonfinite_samples"])


def run(bundle, blocks, **kwargs):
    with open_interpreter("litert", bundle) as interp:
        rt = StreamRuntime(bundle.cfg, bundle.classes, interp, policy=DecisionPolicy(every_frames=EVERY), **kwargs)
        decisions = []
        summary = rt.run(blocks, decisions.append)
    return decisions, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", help="bundle folder (default: train and export a tiny one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        bundle = load_bundle(Path(args.bundle) if args.bundle else build_tiny_bundle(Path(tmp)))
        fs = bundle.cfg.fs
        signal = np.concatenate(list(SynthSource("synth:duration=6,seed=11", fs).segments()))
        clean, _ = run(bundle, ArraySource(signal, fs, block=BLOCK).blocks())
        reference = {d.sample_index: d.probabilities for d in clean}
        print("| fault | counted | decisions invalid / total | valid = clean | recovery after the fault |")
        print("|---|---|---|---|---|")
        for name, blocks, kwargs, spans, shown in scenarios(signal, fs):
            if "full_scale" in kwargs:  # the int16 path has its own clean reference (quantised samples)
                scale = kwargs["full_scale"] / 32767
                raw_clean = RawSource(io.BytesIO(np.round(signal / scale).astype(np.int16).tobytes()), fs,
                                      scale=scale, block=BLOCK)
                ref = {d.sample_index: d.probabilities for d in run(bundle, raw_clean.blocks(), **kwargs)[0]}
            else:
                ref = reference
            decisions, summary = run(bundle, blocks, **kwargs)
            same = all(np.array_equal(d.probabilities, ref[d.sample_index]) for d in decisions if d.valid
                       and d.sample_index in ref)
            recoveries = []
            for _, end in spans:
                after = [d for d in decisions if d.window_start >= end]
                recoveries.append(f"{(after[0].sample_index - end) / fs:.3f} s" if after and after[0].valid
                                  else "n/a")
            counted = ", ".join(f"{k} {summary['faults'][k]}" for k in shown)
            print(f"| {name} | {counted} | {summary['invalid_decisions']} / {summary['decisions']} | "
                  f"{'yes' if same else 'NO'} | {', '.join(recoveries) or 'nothing lost'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
