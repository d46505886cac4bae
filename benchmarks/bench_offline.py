"""Offline data paths: synthetic generation and batch spectrograms, against the reference notebook's way.

Baseline: the reference notebook computes one scipy.signal.spectrogram call per window in a Python loop.
edgecnn computes all windows with one strided, chunked numpy pass (edgecnn.dsp.features).
Prints medians over repeats and the speed-up ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from scipy.signal import spectrogram

from edgecnn import dsp, synth
from edgecnn.config import SpectrogramConfig


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cfg = SpectrogramConfig()

    t_synth = median_time(lambda: synth.generate(n=args.n, seed=0), args.repeats)
    windows = synth.generate(n=args.n, seed=0)["signal"]

    def reference_loop():
        return np.asarray([spectrogram(s, cfg.fs, scaling="spectrum", mode="magnitude")[2] for s in windows])

    t_ref = median_time(reference_loop, args.repeats)
    t_ours = median_time(lambda: dsp.features(windows, cfg), args.repeats)
    print(f"synthetic generation, {args.n} x 10000 samples: median {t_synth:.2f} s")
    print(f"spectrograms of {args.n} windows: scipy per-window loop (reference notebook) median {t_ref:.2f} s, "
          f"edgecnn.dsp.features median {t_ours:.2f} s, speed-up x{t_ref / t_ours:.1f}")
    print(f"features throughput: {args.n / t_ours:.0f} windows/s = "
          f"{args.n * cfg.window_duration_s / t_ours:.0f}x real time")


if __name__ == "__main__":
    main()
