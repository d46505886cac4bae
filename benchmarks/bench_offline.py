"""Offline data paths: spectrograms, parity over 2000 windows and training on 2000 windows.

1. Batch spectrograms: the reference notebook's way (one ``scipy.signal.spectrogram`` call per
   window in a Python loop) against ``edgecnn.dsp.features`` (one strided, chunked numpy pass).
2. Where the time goes in model-level parity over 2000 windows (features, then every bundle model
   in its runtime, batched where the runtime allows, plus the Keras model) and in ``train_run`` on
   2000 windows (10 epochs, spectrograms cached by an earlier run). From a cProfile: the time
   outside TensorFlow and the interpreters is our own functions' time plus their calls straight
   into other libraries (numpy, matplotlib, ...); imports count with the engines. Target: < 10 %.

    python benchmarks/bench_offline.py [--n 2000] [--repeats 3] [--epochs 2]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, figure, median_seconds
from scipy.signal import spectrogram

from edgecnn import dsp, synth
from edgecnn.config import SpectrogramConfig

ENGINES = ("tensorflow", "keras", "ai_edge_litert", "onnxruntime", "tflite_micro", "tf_keras")
OURS = tuple(str(ROOT / d) + "/" for d in ("edgecnn", "export", "firmware_sim", "benchmarks"))


def _ours(func: tuple) -> bool:
    return func[0].startswith(OURS)


def _import_machinery(func: tuple) -> bool:
    return "importlib" in func[0] or func[2] in ("<built-in method builtins.__import__>",)


def outside_seconds(profile: cProfile.Profile) -> tuple[float, float]:
    """(total seconds, seconds outside TensorFlow and the interpreters): our functions' own time
    plus every call they make straight into code that is neither ours nor an engine (numpy,
    scipy, PIL, builtins), whose subtree cannot reach an engine; imports count with the engines
    (importing TensorFlow is TensorFlow's time)."""
    stats = pstats.Stats(profile)
    total = max(ct for (_, _, _, ct, _) in stats.stats.values())
    outside = 0.0
    for func, (_, _, tt, _, callers) in stats.stats.items():
        if _ours(func):
            outside += tt
            continue
        if any(f"/{e}/" in func[0] for e in ENGINES) or _import_machinery(func):
            continue
        for caller, edge in callers.items():
            if _ours(caller):
                outside += edge[3]
    return total, outside


def top_outside(profile: cProfile.Profile, n: int = 6) -> list[str]:
    """The largest items of the outside time: our own functions, and our calls into libraries."""
    stats = pstats.Stats(profile)
    rows = []
    for func, (_, _, tt, _, callers) in stats.stats.items():
        if _ours(func):
            rows.append((tt, f"{Path(func[0]).name}:{func[1]}({func[2]}) own"))
        elif not any(f"/{e}/" in func[0] for e in ENGINES) and not _import_machinery(func):
            for caller, edge in callers.items():
                if _ours(caller):
                    rows.append((edge[3], f"{Path(caller[0]).name}({caller[2]}) -> {Path(func[0]).name}({func[2]})"))
    rows.sort(reverse=True)
    return [f"{t:.2f} s {label}" for t, label in rows[:n]]


def profiled(fn) -> tuple[cProfile.Profile, float]:
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.runcall(fn)
    return profile, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10, help="training epochs (10)")
    parser.add_argument("--bundle", help="edge bundle for parity (default: train one with benchmarks/bundles.py)")
    args = parser.parse_args()
    cfg = SpectrogramConfig()

    t_synth = median_seconds(lambda: synth.generate(n=args.n, seed=0), args.repeats)
    data = synth.generate(n=args.n, seed=0)
    windows = data["signal"]

    def reference_loop():
        return np.asarray([spectrogram(s, cfg.fs, scaling="spectrum", mode="magnitude")[2] for s in windows])

    t_ref = median_seconds(reference_loop, args.repeats)
    t_ours = median_seconds(lambda: dsp.features(windows, cfg), args.repeats)
    print(f"synthetic generation, {args.n} x 10000 samples: median {t_synth:.2f} s")
    print(f"spectrograms of {args.n} windows: scipy per-window loop (reference notebook) median {t_ref:.2f} s, "
          f"edgecnn.dsp.features median {t_ours:.2f} s, speed-up x{t_ref / t_ours:.1f}")
    figure(f"batch spectrograms of {args.n} windows", f"{args.n * cfg.window_duration_s / t_ours:.0f}x real time",
           "(informative)", f"scipy per window {t_ref:.2f} s", f"{t_ref / t_ours:.1f}x")

    from bundles import bundle_path, ensure_bundle

    from edgecnn.dataset import load_windows
    from edgecnn.parity import ParityData, model_level
    from export.bundle import load_bundle

    bundle = load_bundle(args.bundle or ensure_bundle("edge"))
    keras_model = bundle_path("edge").parent / "edge-run" / "model.keras"
    labels = data["label"].argmax(axis=1).astype(np.int64)

    def parity_run():
        images = dsp.features(windows, bundle.cfg)
        parity_data = ParityData(images=images, labels=labels, groups=np.asarray(data["recording"]),
                                 recording_ids=[str(r) for r in np.unique(data["recording"])],
                                 windows=None, selection=f"{args.n} synthetic windows")
        return model_level(bundle, parity_data, keras_model=keras_model if keras_model.is_file() else None,
                           quiet=True)

    profile, took = profiled(parity_run)
    total, out_s = outside_seconds(profile)
    outside = out_s / total
    print(f"parity, model level, {args.n} windows, every format + Keras: {took:.1f} s, outside TensorFlow and "
          f"the interpreters {out_s:.2f} s = {100 * outside:.1f} %")
    print("  largest items outside: " + "; ".join(top_outside(profile)))
    figure(f"parity over {args.n} windows: time outside TF and interpreters", f"{100 * outside:.1f} %", "< 10 %",
           f"total {took:.1f} s", "", outside < 0.10)

    with tempfile.TemporaryDirectory() as tmp:
        pkl = synth.write_pickle(Path(tmp) / "data.pkl", data)
        ws = load_windows(pkl)
        from edgecnn.train import train_run

        # A first short run fills the spectrogram cache, as any earlier run on the same data does.
        train_run(ws, out=Path(tmp) / "run", arch="edge", epochs=1, seed=0, quiet=True, force=True,
                  cache_dir=Path(tmp) / "cache")
        profile, took = profiled(lambda: train_run(ws, out=Path(tmp) / "run", arch="edge", epochs=args.epochs,
                                                   seed=0, quiet=True, force=True, cache_dir=Path(tmp) / "cache"))
    total, out_s = outside_seconds(profile)
    share = out_s / total
    print(f"train, edge, {args.n} windows, {args.epochs} epochs, spectrograms cached: {took:.1f} s, outside "
          f"TensorFlow {out_s:.2f} s = {100 * share:.1f} %")
    print("  largest items outside: " + "; ".join(top_outside(profile)))
    figure(f"train on {args.n} windows ({args.epochs} epochs, cached spectrograms): time outside TF",
           f"{100 * share:.1f} %", "< 10 %", f"total {took:.1f} s", "", share < 0.10)


if __name__ == "__main__":
    main()
