"""``edgecnn predict``: a bundle's int8 model on one recording, window by window, as the device would run it.

Device side: the recording is read, resampled and cut into windows (edgecnn.readers, edgecnn.dataset),
its features computed by the one DSP definition (edgecnn.dsp, numpy) and the int8 model run through
firmware_sim's interpreter. TensorFlow is never imported.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.commands import add_require_signature_argument
from edgecnn.errors import InputError

#: Runtimes that run the bundle's int8 TFLite model.
PREDICT_RUNTIMES = ("litert", "tflm")


def register(sub) -> None:
    p = sub.add_parser("predict", help="classify one recording window by window with a bundle's int8 model",
                       description="Read a recording (any supported format), cut it into the bundle's windows, "
                                   "compute the features and run the int8 model through firmware_sim's "
                                   "interpreter: the class and class probabilities of every window, and the "
                                   "share of windows per class.")
    p.add_argument("bundle", help="bundle folder (edgecnn export)")
    add_require_signature_argument(p)
    p.add_argument("file", help="the recording: a WAV, CSV, .npz, .mat or pickle file (every recording it holds)")
    p.add_argument("--runtime", choices=PREDICT_RUNTIMES, default="litert",
                   help="interpreter for the int8 model (litert default; tflm = the microcontroller's kernels)")
    p.add_argument("--overlap", type=float, default=0.0, help="window overlap in [0, 1) (default 0)")
    p.add_argument("--summary", action="store_true", help="print only the summary line of each recording")
    p.add_argument("--json", default=None, metavar="OUT", help="also write every window's result to this JSON file")
    p.set_defaults(func=run)


def predict_recordings(bundle, path: str | Path, *, runtime: str = "litert", overlap: float = 0.0) -> list[dict]:
    """Per recording in ``path``: its windows' classes and probabilities, and the share per class."""
    from edgecnn import dsp
    from edgecnn.dataset import cut_windows, resample_to, window_hop
    from edgecnn.readers import read_recordings
    from firmware_sim.interpreters import open_interpreter

    cfg = bundle.cfg
    hop = window_hop(cfg.window_samples, overlap)
    results = []
    with open_interpreter(runtime, bundle, dtype="int8") as interpreter:
        for rec in read_recordings(path):
            try:
                signal = resample_to(rec.signal, rec.fs, cfg.fs)
            except InputError as exc:
                raise InputError(f"{rec.source}: recording {rec.id}: {exc}") from None
            rows = signal if signal.ndim == 2 else signal[None, :]
            pieces = [cut_windows(row, cfg.window_samples, hop) for row in rows]
            windows = np.concatenate(pieces) if pieces else np.empty((0, cfg.window_samples))
            if not len(windows):
                raise InputError(f"{rec.source}: recording {rec.id} holds {signal.shape[-1]} samples at "
                                 f"{cfg.fs:g} Hz, shorter than one window ({cfg.window_samples})")
            probs = interpreter.run_batch(dsp.features(windows, cfg), max_batch=64)
            predicted = probs.argmax(axis=1)
            starts = [None] * len(windows) if signal.ndim == 2 else [i * hop / cfg.fs for i in range(len(windows))]
            share = np.bincount(predicted, minlength=len(bundle.classes)) / len(predicted)
            results.append({
                "recording": rec.id, "source": rec.source,
                "label": None if rec.meta.get("label_from") == "file name" else rec.label, "windows": int(len(windows)),
                "share": dict(zip(bundle.classes, share.tolist())),
                "majority": bundle.classes[int(share.argmax())],
                "per_window": [{"window": i, "start_s": starts[i], "class": bundle.classes[int(predicted[i])],
                                "probabilities": dict(zip(bundle.classes, probs[i].round(6).tolist()))}
                               for i in range(len(windows))]})
    return results


def summary_line(result: dict) -> str:
    shares = ", ".join(f"{c} {100 * s:.1f} %" for c, s in result["share"].items())
    label = f" (labelled {result['label']})" if result.get("label") else ""
    return f"{result['recording']}{label}: {result['windows']} windows: {shares}; mostly {result['majority']}"


def run(args) -> int:
    from edgecnn.fileio import write_json
    from export.bundle import load_bundle

    bundle = load_bundle(args.bundle, require_signature=args.require_signature)
    results = predict_recordings(bundle, args.file, runtime=args.runtime, overlap=args.overlap)
    for result in results:
        if not args.summary:
            names = "  ".join(f"p({c})" for c in bundle.classes)
            print(f"{result['recording']}: window  start_s  class  {names}")
            for w in result["per_window"]:
                start = "-" if w["start_s"] is None else f"{w['start_s']:.3f}"
                probs = "  ".join(f"{p:.4f}" for p in w["probabilities"].values())
                print(f"  {w['window']:>5}  {start:>8}  {w['class']}  {probs}")
        print(summary_line(result))
    if args.json:
        write_json(Path(args.json), {"bundle": str(Path(args.bundle).resolve()), "bundle_digest": bundle.digest,
                                     "runtime": args.runtime, "model": "int8", "classes": bundle.classes,
                                     "recordings": results})
    return 0
