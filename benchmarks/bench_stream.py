"""Streaming feature extraction speed: firmware_sim's StreamingSTFT against a naive baseline.

Both consume the same synthetic signal in blocks of 256 samples and produce, after every hop, the
model's feature image of the last window:

- streaming: ``StreamingSTFT.push`` computes only the frames each block completes and updates a
  circular 44-column image (``image()`` is materialised at the decision cadence, every 14 frames);
- naive: at every hop, ``scipy.signal.spectrogram`` recomputes all 44 frames of the last
  ``window_samples`` samples (plus the same feature transform).

Prints the median over repetitions of each one's real-time factor (seconds of signal per second
of processing) and their ratio, measured in the same run. With ``--bundle DIR`` it also times the
whole device loop (features + interpreter + decisions) for each runtime given by ``--runtimes``.

    python benchmarks/bench_stream.py [--seconds 30] [--repeat 5] [--bundle DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from scipy.signal import spectrogram

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgecnn.config import SpectrogramConfig  # noqa: E402
from edgecnn.dsp import transform_magnitudes  # noqa: E402
from edgecnn.synth import render_stream  # noqa: E402
from firmware_sim.streaming_stft import StreamingSTFT  # noqa: E402

BLOCK = 256


def streaming_features(signal: np.ndarray, cfg: SpectrogramConfig, every: int = 14) -> float:
    stft = StreamingSTFT(cfg)
    next_image = cfg.n_frames
    start = time.perf_counter()
    for pos in range(0, signal.size, BLOCK):
        stft.push(signal[pos:pos + BLOCK])
        if stft.frames >= next_image:
            stft.image()
            next_image = stft.frames + every
    return time.perf_counter() - start


def naive_features(signal: np.ndarray, cfg: SpectrogramConfig) -> float:
    """Recompute the whole window's spectrogram at every hop (what a first port often does)."""
    start = time.perf_counter()
    buffered = 0
    next_frame_end = cfg.window_samples
    for pos in range(0, signal.size, BLOCK):
        buffered = pos + min(BLOCK, signal.size - pos)
        while next_frame_end <= buffered:
            window = signal[next_frame_end - cfg.window_samples:next_frame_end]
            _, _, mag = spectrogram(window, fs=cfg.fs, window=cfg.window, nperseg=cfg.nperseg,
                                    noverlap=cfg.noverlap, scaling="spectrum", mode="magnitude")
            transform_magnitudes(mag, cfg)
            next_frame_end += cfg.hop
    return time.perf_counter() - start


def device_loop(signal: np.ndarray, bundle_dir: str, runtime: str) -> dict:
    from export.bundle import load_bundle
    from firmware_sim.interpreters import open_interpreter
    from firmware_sim.runtime import StreamRuntime
    from firmware_sim.sources import ArraySource

    bundle = load_bundle(bundle_dir)
    with open_interpreter(runtime, bundle) as interp:
        rt = StreamRuntime(bundle.cfg, bundle.classes, interp)
        return rt.run(ArraySource(signal, bundle.cfg.fs, block=BLOCK).blocks())["timing"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of signal (default 30)")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions; medians are printed (5)")
    parser.add_argument("--bundle", help="also time the whole loop on this bundle")
    parser.add_argument("--runtimes", default="litert,tflm,onnxruntime")
    args = parser.parse_args(argv)

    cfg = SpectrogramConfig(transform="log").with_normalisation(-60.0, 10.0)
    signal = render_stream(args.seconds, seed=0, fault_onset_s=args.seconds / 2)
    stream_s = signal.size / cfg.fs
    streaming = [streaming_features(signal, cfg) for _ in range(args.repeat)]
    naive = [naive_features(signal, cfg) for _ in range(args.repeat)]
    rtf_stream = stream_s / statistics.median(streaming)
    rtf_naive = stream_s / statistics.median(naive)
    print(f"signal: {stream_s:.1f} s at {cfg.fs:g} Hz, blocks of {BLOCK}, {args.repeat} repetitions (medians)")
    print(f"features, streaming (new frames only): real-time factor {rtf_stream:10.1f}x  "
          f"({1e6 * statistics.median(streaming) / (signal.size / BLOCK):.1f} us per block)")
    print(f"features, naive (whole window per hop): real-time factor {rtf_naive:10.1f}x  "
          f"({1e6 * statistics.median(naive) / (signal.size / BLOCK):.1f} us per block)")
    print(f"streaming / naive speed-up: {rtf_stream / rtf_naive:.1f}x")
    if args.bundle:
        for runtime in args.runtimes.split(","):
            runs = [device_loop(signal, args.bundle, runtime) for _ in range(args.repeat)]
            rtf = statistics.median(r["realtime_factor"] for r in runs)
            load = statistics.median(r["cpu_load"] for r in runs)
            p99 = statistics.median(r["block_ms_p99"] for r in runs)
            print(f"whole loop on {runtime:12s}: real-time factor {rtf:8.1f}x, CPU load {100 * load:6.2f} %, "
                  f"block p99 {p99:.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
