"""Streaming speed on one core: features alone, file replay, and the whole device loop.

Every figure is a median over repetitions with its baseline measured in the same run (the machine
is shared): seconds of signal per second of processing (real-time factor) and the ratio.

Features, blocks of 256 samples (one DMA half-buffer), the image materialised every 14 frames:
- streaming, deferred (what the device loop does): ``StreamingSTFT.feed`` stores each block and
  the frames are computed when the image is needed, all pending frames in one vectorised step;
- streaming, eager: ``StreamingSTFT.push`` computes each block's new frames as it arrives;
- per-frame numpy baseline: one call of ``edgecnn.dsp.frame_features`` per new frame on a numpy
  history (the straightforward incremental port; the issue's ~640x reference);
- naive baseline: ``scipy.signal.spectrogram`` of the whole 10000-sample window at every hop
  (for the envelope feature: ``edgecnn.dsp.features`` of the whole window at every hop);
- the envelope feature (the edge CNN's default), streaming, deferred: same-run ratio to the
  spectrogram's.
File replay: the same signal pushed one second (12800 samples) at a time, and in one piece.

End to end (``--bundle``/``--seed-bundle`` or bundles trained by ``benchmarks/bundles.py``): the
int8 model on LiteRT through ``StreamRuntime`` (a decision every 14 frames = 0.245 s, smoothing,
events, timing), against the naive loop (scipy recompute at every hop, the same interpreter at the
same decisions).

    python benchmarks/bench_stream.py [--seconds 30] [--repeat 9] [--bundle DIR] [--seed-bundle DIR]
"""

from __future__ import annotations

import argparse

import numpy as np
from common import figure, interleaved_medians, median_seconds
from scipy.signal import spectrogram

from edgecnn.config import SpectrogramConfig
from edgecnn.dsp import features, frame_features, transform_magnitudes
from edgecnn.synth import render_stream
from firmware_sim.streaming_stft import StreamingSTFT

BLOCK = 256
EVERY = 14


def streaming_features(signal: np.ndarray, cfg: SpectrogramConfig, push: int = BLOCK, *,
                       deferred: bool = False) -> None:
    stft = StreamingSTFT(cfg)
    add = stft.feed if deferred else stft.push
    next_image = cfg.n_frames
    for pos in range(0, signal.size, push):
        add(signal[pos:pos + push])
        if stft.frames >= next_image:
            stft.image()
            next_image = stft.frames + EVERY


def per_frame_numpy(signal: np.ndarray, cfg: SpectrogramConfig) -> None:
    """One ``frame_features`` call per new frame, a numpy history, a rolling column image."""
    history = np.zeros(0, dtype=np.float32)
    columns = np.zeros((cfg.n_frames, cfg.n_freq), dtype=np.float32)
    frames = 0
    next_image = cfg.n_frames
    for pos in range(0, signal.size, BLOCK):
        history = np.concatenate((history, signal[pos:pos + BLOCK]))
        while history.size >= cfg.nperseg:
            columns[frames % cfg.n_frames] = frame_features(history[:cfg.nperseg], cfg)
            history = history[cfg.hop:]
            frames += 1
        if frames >= next_image:
            np.roll(columns, -(frames % cfg.n_frames), axis=0).T.copy()
            next_image = frames + EVERY


def naive_features(signal: np.ndarray, cfg: SpectrogramConfig, on_image=None) -> None:
    """Recompute the whole window's spectrogram at every hop (what a first port often does)."""
    next_frame_end = cfg.window_samples
    frames_since = EVERY - 1
    for pos in range(0, signal.size, BLOCK):
        buffered = pos + min(BLOCK, signal.size - pos)
        while next_frame_end <= buffered:
            window = signal[next_frame_end - cfg.window_samples:next_frame_end]
            if cfg.feature == "envelope":
                image = features(window[None], cfg)[0, :, :, 0]
            else:
                _, _, mag = spectrogram(window, fs=cfg.fs, window=cfg.window, nperseg=cfg.nperseg,
                                        noverlap=cfg.noverlap, scaling="spectrum", mode="magnitude")
                image = transform_magnitudes(mag, cfg)
            frames_since += 1
            if on_image is not None and frames_since == EVERY:
                on_image(image[:, :, None])
                frames_since = 0
            next_frame_end += cfg.hop


def device_loop(signal: np.ndarray, bundle, interp) -> None:
    from firmware_sim.decisions import DecisionPolicy
    from firmware_sim.runtime import StreamRuntime
    from firmware_sim.sources import ArraySource

    rt = StreamRuntime(bundle.cfg, bundle.classes, interp, policy=DecisionPolicy(every_frames=EVERY))
    rt.run(ArraySource(signal, bundle.cfg.fs, block=BLOCK).blocks())


def end_to_end(name: str, path, signal: np.ndarray, repeat: int, target: float) -> None:
    from export.bundle import load_bundle
    from firmware_sim.interpreters import open_interpreter

    bundle = load_bundle(path)
    seconds = signal.size / bundle.cfg.fs
    with open_interpreter("litert", bundle) as interp:
        interp.run(np.zeros(bundle.cfg.input_shape, dtype=np.float32))  # warm up the delegate
        t = interleaved_medians({"loop": lambda: device_loop(signal, bundle, interp),
                                 "naive": lambda: naive_features(signal, bundle.cfg, interp.run)}, repeat)
        t_loop, t_naive = t["loop"], t["naive"]
        t_infer = median_seconds(lambda: interp.run(np.zeros(bundle.cfg.input_shape, dtype=np.float32)), 50)
    entry = bundle.model(format="tflite", dtype="int8")
    rtf, rtf_naive = seconds / t_loop, seconds / t_naive
    print(f"end to end, {name} int8 ({entry.bytes} bytes, {entry.macs} MACs) on LiteRT, decision every "
          f"{EVERY} frames: {rtf:8.1f}x real time; naive loop {rtf_naive:6.1f}x; ratio {rtf / rtf_naive:.1f}x; "
          f"one inference {1e3 * t_infer:.3f} ms")
    figure(f"end to end, {name} int8 LiteRT, 4 decisions/s, blocks of 256", f"{rtf:.0f}x real time",
           f">= {target:.0f}x", f"naive {rtf_naive:.0f}x", f"{rtf / rtf_naive:.1f}x", rtf >= target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of signal (default 30)")
    parser.add_argument("--repeat", type=int, default=9, help="repetitions, interleaved; medians are printed (9)")
    parser.add_argument("--bundle", help="edge bundle for the end-to-end figure (default: train one)")
    parser.add_argument("--seed-bundle", help="seed bundle for the end-to-end figure (default: train one)")
    parser.add_argument("--no-loop", action="store_true", help="features only")
    args = parser.parse_args(argv)

    cfg = SpectrogramConfig(transform="log").with_normalisation(-60.0, 10.0)
    envelope = SpectrogramConfig(transform="log", feature="envelope", level="column_mean").with_normalisation(0.0, 6.0)
    signal = render_stream(args.seconds, seed=0, fault_onset_s=args.seconds / 2)
    seconds = signal.size / cfg.fs
    n_blocks = signal.size / BLOCK
    t = interleaved_medians({
        "stream": lambda: streaming_features(signal, cfg, deferred=True),
        "eager": lambda: streaming_features(signal, cfg),
        "frame": lambda: per_frame_numpy(signal, cfg),
        "naive": lambda: naive_features(signal, cfg),
        "second": lambda: streaming_features(signal, cfg, push=int(cfg.fs)),
        "whole": lambda: streaming_features(signal, cfg, push=signal.size),
        "envelope": lambda: streaming_features(signal, envelope, deferred=True),
        "envelope_naive": lambda: naive_features(signal, envelope),
    }, args.repeat)
    t_stream, t_eager, t_frame, t_naive = t["stream"], t["eager"], t["frame"], t["naive"]
    t_second, t_whole = t["second"], t["whole"]
    rtf = {k: seconds / t for k, t in (("stream", t_stream), ("eager", t_eager), ("frame", t_frame),
                                        ("naive", t_naive),
                                        ("second", t_second), ("whole", t_whole))}
    print(f"signal: {seconds:.1f} s at {cfg.fs:g} Hz, blocks of {BLOCK}, medians of {args.repeat}")
    for key, label, taken in (("stream", "streaming, deferred (device loop)", t_stream),
                          ("eager", "streaming, eager (push)", t_eager),
                          ("frame", "per-frame numpy baseline", t_frame),
                          ("naive", "naive scipy recompute per hop", t_naive)):
        print(f"features, {label:32s}: {rtf[key]:9.1f}x real time ({1e6 * taken / n_blocks:7.1f} us per block)")
    print(f"file replay, 1 s pushes: {rtf['second']:9.1f}x; one push of {seconds:.0f} s: {rtf['whole']:9.1f}x")
    print(f"streaming / per-frame numpy: {rtf['stream'] / rtf['frame']:.2f}x; streaming / naive: "
          f"{rtf['stream'] / rtf['naive']:.1f}x")
    figure("features, blocks of 256, eager push (frames as blocks arrive)", f"{rtf['eager']:.0f}x real time",
           "(informative)", f"per-frame numpy {rtf['frame']:.0f}x; naive {rtf['naive']:.0f}x",
           f"{rtf['eager'] / rtf['frame']:.1f}x; {rtf['eager'] / rtf['naive']:.0f}x")
    figure("features, blocks of 256, device loop (feed, frames per decision)", f"{rtf['stream']:.0f}x real time",
           ">= 2000x, 3x per-frame, 50x naive",
           f"per-frame numpy {rtf['frame']:.0f}x; naive {rtf['naive']:.0f}x",
           f"{rtf['stream'] / rtf['frame']:.1f}x; {rtf['stream'] / rtf['naive']:.0f}x",
           rtf["stream"] >= 2000 and rtf["stream"] >= 3 * rtf["frame"] and rtf["stream"] >= 50 * rtf["naive"])
    rtf_env, rtf_env_naive = seconds / t["envelope"], seconds / t["envelope_naive"]
    print(f"features, envelope (edge default), deferred: {rtf_env:9.1f}x real time "
          f"({1e6 * t['envelope'] / n_blocks:7.1f} us per block); spectrogram / envelope: "
          f"{rtf['stream'] / rtf_env:.2f}x; envelope naive recompute per hop: {rtf_env_naive:.1f}x")
    figure("features, envelope image (128x27), blocks of 256, device loop", f"{rtf_env:.0f}x real time",
           ">= 100x", f"spectrogram {rtf['stream']:.0f}x; naive {rtf_env_naive:.0f}x",
           f"{rtf_env / rtf['stream']:.2f}x; {rtf_env / rtf_env_naive:.0f}x", rtf_env >= 100)
    best = max(rtf["second"], rtf["whole"])
    figure("file replay, large pushes (1 s / whole file)", f"{rtf['second']:.0f}x / {rtf['whole']:.0f}x",
           ">= 10000x", f"naive {rtf['naive']:.0f}x", f"{best / rtf['naive']:.0f}x", best >= 10000)

    if not args.no_loop:
        from bundles import ensure_bundle

        for name, path, target in (("edge", args.bundle, 600.0), ("seed", args.seed_bundle, 150.0)):
            end_to_end(name, path or ensure_bundle(name), signal, args.repeat, target)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
