"""Parity: float against quantised, from the model to the stream.

Model level: the same test windows through the Keras model (when its run is at hand) and every model
file of a bundle in its own runtime (LiteRT float32/int8, tflite-micro int8, ONNX Runtime float/int8):
accuracy, per-class recall, confusion, accuracy per recording, and against the float reference
prediction agreement and output errors. Stream level: float and int8 streamed through firmware_sim
over a continuous signal with known class changes: decision agreement, false alarms per hour, missed
or late detections. The gate fails when an int8 variant loses more than ``max_drop`` accuracy or
agrees less than ``min_agreement`` with float.

Keras (and so TensorFlow) is imported only when a run directory's model is evaluated.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import dsp
from edgecnn.dataset import WindowSet, load_windows
from edgecnn.errors import InputError
from edgecnn.metrics import classification_report, output_error
from edgecnn.progress import Progress
from edgecnn.readers import DEFAULT_OPTIONS, ReadOptions

#: (variant name, runtime, model format, dtype) in report order; absent model files are skipped.
VARIANTS = (
    ("tflite_float32/litert", "litert", "tflite", "float32"),
    ("tflite_float16/litert", "litert", "tflite", "float16"),
    ("tflite_dynamic/litert", "litert", "tflite", "dynamic"),
    ("tflite_int8/litert", "litert", "tflite", "int8"),
    ("tflite_int8/tflm", "tflm", "tflite", "int8"),
    ("onnx_float32/onnxruntime", "onnxruntime", "onnx", "float32"),
    ("onnx_int8/onnxruntime", "onnxruntime", "onnx", "int8"),
)
QUANTISED = ("int8",)


@dataclasses.dataclass
class ParityData:
    """Feature images of the windows parity evaluates, with labels in the bundle's class order."""

    images: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    recording_ids: list[str]
    windows: WindowSet
    selection: str


def select_data(bundle, path: str | Path, *, label_map: str | None = None, overlap: float | None = None,
                progress: Callable[[int, int], None] | None = None, options: ReadOptions = DEFAULT_OPTIONS,
                ) -> ParityData:
    """Windows of ``path`` at the bundle's DSP config; the run's test recordings when its split applies.

    ``label_map`` and ``overlap`` default to the ones the bundle's model was trained with.
    """
    training = bundle.manifest.get("training") or {}
    label_map = label_map or training.get("label_map") or None
    if overlap is None:
        hop = (training.get("data") or {}).get("hop")
        overlap = 1.0 - hop / bundle.cfg.window_samples if hop else 0.0
    ws = load_windows(path, bundle.cfg, label_map=label_map, overlap=overlap, options=options)
    unknown = [c for c in ws.classes if c not in bundle.classes]
    if unknown:
        raise InputError(f"{path}: data classes {unknown} are not the bundle's classes {bundle.classes}; "
                         f"pass --label-map (e.g. normal={bundle.classes[0]},*={bundle.classes[-1]})")
    to_bundle = np.array([bundle.classes.index(c) for c in ws.classes], dtype=np.int64)
    split = training.get("split") or {}
    test_ids = set(split.get("test") or [])
    rec_ids = [r["id"] for r in ws.recordings]
    chosen = [g for g, rid in enumerate(rec_ids) if rid in test_ids]
    if chosen:
        idx = np.flatnonzero(np.isin(ws.groups, chosen))
        selection = (f"the run's test recordings: {len(chosen)} of {len(rec_ids)} recordings, "
                     f"{idx.size} of {len(ws)} windows")
    else:
        idx = np.arange(len(ws))
        selection = f"all {len(ws)} windows of {len(rec_ids)} recordings (no run split applies)"
    subset = ws.subset(idx)
    images = dsp.features(subset.windows, bundle.cfg, progress=progress)
    return ParityData(images=images, labels=to_bundle[subset.labels], groups=subset.groups,
                      recording_ids=rec_ids, windows=subset, selection=selection)


def available_variants(bundle) -> list[tuple[str, str, str, str]]:
    present = {(e.format, e.dtype) for e in bundle.models.values()}
    return [v for v in VARIANTS if (v[2], v[3]) in present]


#: Images per batched invoke in run_variant (and per progress step).
PARITY_BATCH = 64


def run_variant(bundle, runtime: str, dtype: str, images: np.ndarray, *,
                progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Class probabilities (N, C) of ``images`` through one bundle model in one runtime."""
    from firmware_sim.interpreters import open_interpreter

    out = np.empty((len(images), len(bundle.classes)), dtype=np.float32)
    with open_interpreter(runtime, bundle, dtype=dtype) as interpreter:
        # Batched where the runtime takes a batch (Interpreter.run_batch: ONNX Runtime, LiteRT
        # with a resized input; row b equals run(images[b])), image by image otherwise.
        for first in range(0, len(images), PARITY_BATCH):
            stop = min(len(images), first + PARITY_BATCH)
            out[first:stop] = interpreter.run_batch(images[first:stop], max_batch=PARITY_BATCH)
            if progress is not None:
                progress(stop, len(images))
    return out


def run_keras(model_path: Path, images: np.ndarray) -> np.ndarray:
    from edgecnn.rundir import load_keras_model  # imports TensorFlow quietly (edgecnn.quiet)

    model = load_keras_model(model_path)
    return np.asarray(model.predict(images, batch_size=256, verbose=0), dtype=np.float32)


def model_level(bundle, data: ParityData, *, keras_model: Path | None = None, quiet: bool = False,
                runtimes: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Every variant on the same images: metrics per variant, errors against the float reference."""
    results: dict[str, dict[str, Any]] = {}
    probs: dict[str, np.ndarray] = {}
    variants = [v for v in available_variants(bundle) if runtimes is None or v[1] in runtimes]
    if keras_model is not None:
        start = time.perf_counter()
        probs["keras_float32"] = run_keras(keras_model, data.images)
        results["keras_float32"] = {"runtime": "keras", "file": str(keras_model), "dtype": "float32",
                                    "seconds": time.perf_counter() - start}
    for name, runtime, fmt, dtype in variants:
        entry = bundle.model(format=fmt, dtype=dtype)
        start = time.perf_counter()
        probs[name] = run_variant(bundle, runtime, dtype, data.images,
                                  progress=Progress(f"parity {name:<26}", quiet=quiet))
        results[name] = {"runtime": runtime, "file": entry.file, "dtype": dtype,
                         "seconds": time.perf_counter() - start}
    if not probs:
        raise InputError("the bundle has no model this machine's runtimes can run")
    reference = next(n for n in ("keras_float32", "tflite_float32/litert", "onnx_float32/onnxruntime",
                                 *probs) if n in probs)
    for name, p in probs.items():
        report = classification_report(data.labels, p.argmax(axis=1), bundle.classes, groups=data.groups,
                                       recording_ids=data.recording_ids)
        results[name].update(report)
        results[name]["ms_per_window"] = 1000.0 * results[name]["seconds"] / max(1, len(p))
        results[name]["vs_reference"] = output_error(probs[reference], p)
    return {"reference": reference, "n_windows": int(len(data.labels)), "selection": data.selection,
            "variants": results, "probabilities": probs}


# --- stream level ------------------------------------------------------------------------------------
@dataclasses.dataclass
class Timeline:
    """A continuous signal and its true class from each boundary on."""

    signal: np.ndarray
    starts: list[int]
    classes: list[int]
    description: str

    def truth_at(self, sample: int) -> int:
        i = int(np.searchsorted(self.starts, sample, side="right")) - 1
        return self.classes[max(0, i)]


def synthetic_timelines(bundle, *, seeds: tuple[int, ...] = (0, 1, 2), duration_s: float = 60.0,
                        onset_s: float = 30.0) -> list[Timeline]:
    """The synthetic onset stream (class A healthy until ``onset_s``, then class B), one per seed."""
    from edgecnn import synth

    out = []
    for seed in seeds:
        # Seeds far from the training data's: machines the model never saw.
        signal = synth.render_stream(duration_s, seed=10_000 + seed, fs=bundle.cfg.fs, fault_onset_s=onset_s)
        out.append(Timeline(signal, [0, int(onset_s * bundle.cfg.fs)], [0, len(bundle.classes) - 1],
                            f"synthetic onset stream seed {10_000 + seed}: A until {onset_s:g} s, then B"))
    return out


def recording_timeline(bundle, data: ParityData, *, windows_each: int = 12) -> Timeline:
    """The test recordings played back to back, classes alternating, up to ``windows_each`` windows each.

    Only the evaluated (test) windows are played: for a continuous recording every window that starts
    at least a window after the previous one, so the stream holds the recording's own samples in order.
    """
    ws = data.windows
    step = -(-ws.windows.shape[1] // ws.hop) if ws.hop else 1
    queues: dict[int, list[np.ndarray]] = {}
    for g in np.unique(data.groups):
        idx = np.flatnonzero(data.groups == g)[::step][:windows_each]
        queues.setdefault(int(data.labels[idx[0]]), []).append(idx)
    if len(queues) < 2:
        raise InputError("stream parity over recordings needs test recordings of at least two classes")
    pieces, starts, classes, pos = [], [], [], 0
    lists = [queues[c] for c in sorted(queues)]
    while any(lists):
        for cls, queue in zip(sorted(queues), lists):
            if not queue:
                continue
            idx = queue.pop(0)
            if not classes or classes[-1] != cls:
                starts.append(pos)
                classes.append(cls)
            pieces.append(ws.windows[idx].reshape(-1))
            pos += pieces[-1].size
    n_recordings = len(np.unique(data.groups))
    return Timeline(np.concatenate(pieces).astype(np.float32), starts, classes,
                    f"{n_recordings} test recordings back to back, up to {windows_each} windows each")


def stream_once(bundle, timeline: Timeline, runtime: str, dtype: str, *, block: int = 256) -> dict[str, Any]:
    from firmware_sim.interpreters import open_interpreter
    from firmware_sim.runtime import StreamRuntime
    from firmware_sim.sources import ArraySource

    with open_interpreter(runtime, bundle, dtype=dtype) as interpreter:
        rt = StreamRuntime(bundle.cfg, bundle.classes, interpreter)
        decisions = []
        summary = rt.run(ArraySource(timeline.signal, bundle.cfg.fs, block=block).blocks(),
                         on_decision=decisions.append)
    return {"decisions": decisions, "events": list(rt.events), "summary": summary}


def stream_metrics(timeline: Timeline, run: dict[str, Any], fs: float, classes: list[str]) -> dict[str, Any]:
    """Detection delay per class change, false alarms, decision accuracy on windows of one class."""
    events = run["events"]
    hours = timeline.signal.size / fs / 3600.0
    false_alarms = [e for e in events if classes.index(e.state) != timeline.truth_at(e.sample_index)]
    delays, missed = [], 0
    bounds = [*timeline.starts[1:], timeline.signal.size]
    for start, end, cls in zip(timeline.starts[1:], bounds[1:], timeline.classes[1:]):
        hit = next((e for e in events if start <= e.sample_index < end and classes.index(e.state) == cls), None)
        if hit is None:
            missed += 1
        else:
            delays.append((hit.sample_index - start) / fs)
    pure = [d for d in run["decisions"] if d.valid
            and timeline.truth_at(d.window_start) == timeline.truth_at(d.sample_index - 1)]
    correct = sum(int(np.argmax(d.probabilities)) == timeline.truth_at(d.sample_index - 1) for d in pure)
    return {"decisions": len(run["decisions"]), "events": [e.to_json() for e in events],
            "false_alarms": len(false_alarms), "false_alarms_per_hour": len(false_alarms) / hours,
            "class_changes": len(timeline.starts) - 1, "missed": missed,
            "detection_delay_s": delays, "decision_accuracy": correct / len(pure) if pure else None,
            "realtime_factor": run["summary"]["timing"].get("realtime_factor")}


def stream_level(bundle, timelines: list[Timeline], *, float_dtype: str = "float32",
                 runtime: str = "litert") -> dict[str, Any]:
    """Float and int8 through the same streams: per-variant figures and their decision agreement."""
    present = {(e.format, e.dtype) for e in bundle.models.values()}
    dtypes = [d for d in (float_dtype, "int8") if ("tflite", d) in present]
    out: dict[str, Any] = {"runtime": runtime, "streams": []}
    for timeline in timelines:
        runs = {d: stream_once(bundle, timeline, runtime, d) for d in dtypes}
        entry = {"description": timeline.description, "seconds": timeline.signal.size / bundle.cfg.fs,
                 "variants": {d: stream_metrics(timeline, runs[d], bundle.cfg.fs, bundle.classes) for d in dtypes}}
        if len(dtypes) == 2:
            a, b = (runs[d]["decisions"] for d in dtypes)
            same_argmax = [int(np.argmax(x.probabilities)) == int(np.argmax(y.probabilities)) for x, y in zip(a, b)]
            same_state = [x.state == y.state for x, y in zip(a, b)]
            entry["decision_agreement"] = float(np.mean(same_argmax)) if same_argmax else None
            entry["state_agreement"] = float(np.mean(same_state)) if same_state else None
            entry["same_events"] = ([(e.decision, e.previous, e.state) for e in runs[dtypes[0]]["events"]]
                                    == [(e.decision, e.previous, e.state) for e in runs[dtypes[1]]["events"]])
        out["streams"].append(entry)
    return out


# --- the gate ----------------------------------------------------------------------------------------
def gate(model: dict[str, Any], stream: dict[str, Any] | None, *, max_drop: float,
         min_agreement: float) -> list[str]:
    """Failure messages (empty when the gate passes)."""
    failures = []
    ref_name = model["reference"]
    ref_acc = model["variants"][ref_name]["accuracy"]
    for name, result in model["variants"].items():
        if result["dtype"] not in QUANTISED:
            continue
        drop = ref_acc - result["accuracy"]
        if drop > max_drop + 1e-12:
            failures.append(f"{name}: accuracy {result['accuracy']:.4f} is {drop:.4f} below {ref_name} "
                            f"({ref_acc:.4f}); allowed drop {max_drop:.4f}")
        agreement = result["vs_reference"]["agreement"]
        if agreement < min_agreement - 1e-12:
            failures.append(f"{name}: agrees with {ref_name} on {agreement:.4f} of windows; "
                            f"required {min_agreement:.4f}")
    # On a stream the device acts on the smoothed state, so that is what float and int8 must agree on;
    # raw per-decision agreement is reported (windows near the decision boundary flip either way).
    for entry in (stream or {}).get("streams", []):
        agreement = entry.get("state_agreement")
        if agreement is not None and agreement < min_agreement - 1e-12:
            failures.append(f"stream ({entry['description']}): float and int8 states agree on "
                            f"{agreement:.4f} of decisions; required {min_agreement:.4f}")
    return failures
