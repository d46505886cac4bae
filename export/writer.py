"""``export_bundle``: a run directory in, a verified bundle folder out, written atomically.

Order of work: read the run, pick a stratified calibration sample of its training windows,
convert every requested model into a temporary folder next to the destination, measure the
footprint, compute golden vectors, write ``manifest.json`` last, then rename the folder into place.
Any exception on the way removes the temporary folder; an existing bundle stays untouched.

Training side: TensorFlow, tf2onnx and onnx are imported inside ``export_bundle`` only.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import platform
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import __version__ as edgecnn_version
from edgecnn import dsp
from edgecnn.errors import BundleError, ConfigError, InputError
from edgecnn.rundir import RunInfo, read_run
from export import carray, footprint, golden
from export.bundle import (
    BUNDLE_FORMAT,
    GOLDEN_FILE,
    INPUT_LAYOUT,
    MANIFEST_FILE,
    SCHEMA_VERSION,
    ModelEntry,
    TensorSpec,
    atomic_directory,
    check_output_dir,
    file_record,
)

#: Format key -> (file name, model format, dtype). ``--formats`` takes these keys.
MODEL_FILES = {
    "tflite_int8": ("model_int8.tflite", "tflite", "int8"),
    "tflite_float32": ("model_float32.tflite", "tflite", "float32"),
    "tflite_float16": ("model_float16.tflite", "tflite", "float16"),
    "tflite_dynamic": ("model_dynamic.tflite", "tflite", "dynamic"),
    "onnx_float32": ("model_float32.onnx", "onnx", "float32"),
    "onnx_int8": ("model_int8.onnx", "onnx", "int8"),
}
C_ARRAY = "c_array"
C_ARRAY_STEM = "model_int8_data"
ALL_FORMATS = (*MODEL_FILES, C_ARRAY)
DEFAULT_FORMATS = ("tflite_int8", "tflite_float32", "onnx_float32", "onnx_int8", C_ARRAY)
#: The int8 TFLite model is always written: golden vectors, the C array and the arena need it.
REQUIRED_FORMAT = "tflite_int8"
CALIBRATION_SEED = 0
TOOL_PACKAGES = ("tensorflow", "keras", "tf2onnx", "onnx", "onnxruntime", "ai-edge-litert",
                 "tflite-micro", "numpy", "scipy", "flatbuffers")


def parse_formats(formats: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalise ``--formats`` (comma list or iterable; ``default``/``all`` keywords; ``-`` = ``_``)."""
    if formats is None:
        return DEFAULT_FORMATS
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    chosen: list[str] = []
    for item in items:
        key = str(item).strip().lower().replace("-", "_")
        if not key:
            continue
        expanded = {"default": DEFAULT_FORMATS, "all": ALL_FORMATS}.get(key, (key,))
        for name in expanded:
            if name not in ALL_FORMATS:
                raise ConfigError(f"unknown export format {item!r}; choose from {', '.join(ALL_FORMATS)} "
                                  "(or 'default', 'all')")
            if name not in chosen:
                chosen.append(name)
    if REQUIRED_FORMAT not in chosen:
        chosen.insert(0, REQUIRED_FORMAT)
    return tuple(name for name in ALL_FORMATS if name in chosen)


def stratified_sample(labels: np.ndarray, n: int, *, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """Sorted indices of ``n`` windows (all if fewer), each class in proportion to its share.

    Every class gets at least one window, so with more classes than ``n`` a few more are returned.
    """
    labels = np.asarray(labels)
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(n * counts / counts.sum()).astype(int))
    # hand out what rounding left over to the largest classes first
    for i in np.argsort(-counts):
        if quota.sum() >= n:
            break
        quota[i] += int(quota[i] < counts[i])
    picked = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota)]
    return np.sort(np.concatenate(picked))


def export_bundle(run_dir: str | Path, out_dir: str | Path, *, formats: str | Iterable[str] | None = None,
                  calibration: int = 200, force: bool = False,
                  progress: Callable[[str], None] | None = None, quiet: bool = False) -> Path:
    """Write the bundle of a run directory to ``out_dir`` and return its path.

    ``formats``: keys of ``ALL_FORMATS`` (default ``DEFAULT_FORMATS``; ``tflite_int8`` always).
    ``calibration``: how many training windows (stratified) calibrate the int8 models.
    ``progress(message)`` is told each stage. ``quiet`` swallows the converters' native logging.
    """
    run = read_run(run_dir)
    wanted = parse_formats(formats)
    if isinstance(calibration, bool) or not isinstance(calibration, (int, np.integer)) or calibration < 1:
        raise ConfigError(f"calibration={calibration!r} must be a positive number of windows")
    out_dir = check_output_dir(out_dir, force=force)  # fail before the slow imports
    windows, labels = run.calibration()
    if windows.ndim != 2 or windows.shape[1] != run.cfg.window_samples or len(windows) != len(labels):
        raise InputError(f"{run.path}: calibration windows have shape {windows.shape} with "
                         f"{len(labels)} labels; expected (M, {run.cfg.window_samples}) and M labels")
    if len(windows) == 0:
        raise InputError(f"{run.path}: calibration.npz holds no windows")
    say = progress or (lambda message: None)
    with atomic_directory(out_dir, force=force) as tmp:
        _write_bundle(tmp, run, wanted, windows, labels, int(calibration), say, quiet)
    say(f"bundle written to {out_dir}")
    return out_dir


@contextlib.contextmanager
def _converter_chatter(quiet: bool) -> Iterator[None]:
    """Keep TensorFlow's, the converters' and the runtimes' native logging off the terminal.

    On success it is dropped; on failure it is replayed to stderr (unless ``quiet``) because it
    usually says why a conversion failed.
    """
    captured: list[str] = []
    try:
        with footprint.captured_native_output() as captured:
            yield
    except BaseException:
        if not quiet and captured:
            sys.stderr.write(captured[0][-20000:])
        raise


def _write_bundle(tmp: Path, run: RunInfo, wanted: tuple[str, ...], windows: np.ndarray,
                  labels: np.ndarray, calibration: int, say: Callable[[str], None], quiet: bool) -> None:
    from export import onnx_export, tflite_export

    def chatter():
        return _converter_chatter(quiet)

    cfg = run.cfg
    say(f"loading {run.model_path}")
    with chatter():
        import keras

        model = keras.models.load_model(run.model_path, compile=False)
    _check_model(model, run)
    params, macs = footprint.count_params_macs(model)

    sample = stratified_sample(labels, calibration)
    say(f"computing features of {len(sample)} calibration windows")
    images = dsp.features(windows[sample], cfg)
    metadata = _model_metadata(run)
    metadata_json = json.dumps(metadata, sort_keys=True)

    models: dict[str, ModelEntry] = {}
    files: dict[str, dict[str, Any]] = {}

    def add_model(key: str, path: Path, specs: tuple[TensorSpec, TensorSpec], arena: int | None) -> None:
        name, fmt, dtype = MODEL_FILES[key]
        record = file_record(path)
        models[name] = ModelEntry(file=name, format=fmt, dtype=dtype, sha256=record["sha256"],
                                  bytes=record["bytes"], input=specs[0], output=specs[1],
                                  parameters=params, macs=macs, arena_bytes=arena)

    arena_int8: dict[str, int] = {}
    for key in wanted:
        name, fmt, dtype = MODEL_FILES.get(key, (None, None, None))
        if fmt != "tflite":
            continue
        say(f"converting {name}")
        representative = (images[i:i + 1] for i in range(len(images)))
        with chatter():
            flat = tflite_export.convert(model, dtype, representative=representative)
            flat = tflite_export.add_metadata(flat, tflite_export.METADATA_NAME, metadata_json.encode())
            path = tmp / name
            path.write_bytes(flat)
            specs = tflite_export.tensor_specs(path)
        arena = _arena_or_none(path, required=(key == REQUIRED_FORMAT))
        if key == REQUIRED_FORMAT:
            arena_int8 = arena
        add_model(key, path, specs, arena["total"] if arena else None)

    if "onnx_float32" in wanted or "onnx_int8" in wanted:
        say("converting model_float32.onnx")
        onnx_meta = {"edgecnn": metadata_json}
        float_name = MODEL_FILES["onnx_float32"][0]
        # the int8 model quantises the float one; keep it out of the bundle unless asked for
        float_path = tmp / (float_name if "onnx_float32" in wanted else f".{float_name}")
        import onnx

        with chatter():
            onnx.save(onnx_export.convert_float(model, onnx_meta), str(float_path))
        if "onnx_float32" in wanted:
            add_model("onnx_float32", float_path, onnx_export.tensor_specs(float_path), None)
        if "onnx_int8" in wanted:
            say("quantising model_int8.onnx")
            int8_path = tmp / MODEL_FILES["onnx_int8"][0]
            with chatter():
                onnx_export.quantize_int8(float_path, int8_path, images, onnx_meta)
            add_model("onnx_int8", int8_path, onnx_export.tensor_specs(int8_path), None)
        if "onnx_float32" not in wanted:
            float_path.unlink()
    for leftover in tmp.glob("*-opt.onnx"):  # onnxruntime's pre-processing scratch, if any
        leftover.unlink()

    int8_entry = models[MODEL_FILES[REQUIRED_FORMAT][0]]
    int8_path = tmp / int8_entry.file
    c_array_doc = None
    if C_ARRAY in wanted:
        say(f"writing {C_ARRAY_STEM}.cc/.h")
        c_array_doc = _write_c_array(tmp, int8_path.read_bytes(), int8_entry)
        for suffix in (".h", ".cc"):
            files[C_ARRAY_STEM + suffix] = {**file_record(tmp / (C_ARRAY_STEM + suffix)), "role": "c_array"}

    say("computing golden vectors")
    chosen = golden.select_golden(labels)
    with chatter():
        vectors = golden.golden_vectors(windows[chosen], labels[chosen], cfg, int8_path,
                                        int8_entry.input, int8_entry.output)
    np.savez_compressed(tmp / GOLDEN_FILE, **vectors)
    files[GOLDEN_FILE] = {**file_record(tmp / GOLDEN_FILE), "role": "golden"}

    manifest = {
        "format": BUNDLE_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "edgecnn_version": edgecnn_version,
        "classes": list(run.classes),
        "dsp": cfg.to_dict(),
        "input": {"shape": [1, *cfg.input_shape], "layout": INPUT_LAYOUT, "dtype": "float32",
                  "description": "normalised spectrogram features (edgecnn.dsp.features)"},
        "models": {name: entry.to_dict() for name, entry in models.items()},
        "files": files,
        "footprint": {
            "flash_bytes": int8_entry.bytes,
            "arena_bytes_tflm": arena_int8["total"],
            "arena_head_bytes": arena_int8.get("head"),
            "arena_tail_bytes": arena_int8.get("tail"),
            "arena_note": footprint.ARENA_NOTE,
            "device_buffers": footprint.device_buffers(cfg),
        },
        "calibration": {"windows": int(len(sample)), "available": int(len(labels)),
                        "per_class": _class_counts(labels[sample], run.classes),
                        "seed": CALIBRATION_SEED},
        "training": _training_summary(run),
        "golden": GOLDEN_FILE,
        "c_array": c_array_doc,
        "tool_versions": tool_versions(),
    }
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")


def _check_model(model: Any, run: RunInfo) -> None:
    in_shape = tuple(model.inputs[0].shape[1:])
    if len(model.inputs) != 1 or in_shape != run.cfg.input_shape:
        raise InputError(f"{run.model_path}: model input {in_shape} does not match the DSP config's "
                         f"{run.cfg.input_shape}; was the run written with another config?")
    n_out = model.outputs[0].shape[-1]
    if len(model.outputs) != 1 or n_out != len(run.classes):
        raise InputError(f"{run.model_path}: model has {n_out} outputs but the run names "
                         f"{len(run.classes)} classes {run.classes}")


def _arena_or_none(path: Path, *, required: bool) -> dict[str, int] | None:
    try:
        return footprint.tflm_arena(path)
    except BundleError:
        if required:
            raise
        return None  # e.g. dynamic-range models: tflite-micro has no hybrid kernels


def _write_c_array(tmp: Path, data: bytes, entry: ModelEntry) -> dict[str, Any]:
    symbol = carray.c_symbol(C_ARRAY_STEM)
    header = f"{C_ARRAY_STEM}.h"
    (tmp / header).write_text(carray.c_header(symbol))
    comment = (f"{entry.file}: {entry.bytes} bytes, sha256 {entry.sha256}\n"
               f"input scale {entry.input.scale!r} zero_point {entry.input.zero_point}")
    (tmp / f"{C_ARRAY_STEM}.cc").write_text(carray.c_source(data, symbol, header=header, comment=comment))
    return {"source": f"{C_ARRAY_STEM}.cc", "header": header, "symbol": symbol,
            "length_symbol": f"{symbol}_len", "model": entry.file, "alignment": 16}


def _class_counts(labels: np.ndarray, classes: list[str]) -> dict[str, int]:
    values, counts = np.unique(labels, return_counts=True)
    return {(classes[v] if 0 <= v < len(classes) else str(v)): int(k)
            for v, k in zip(values.tolist(), counts)}


def _model_metadata(run: RunInfo) -> dict[str, Any]:
    """What a lone model file carries about how to feed it (TFLite metadata, ONNX metadata_props)."""
    return {"format": BUNDLE_FORMAT, "schema_version": SCHEMA_VERSION, "classes": list(run.classes),
            "dsp": run.cfg.to_dict(), "input_shape": [1, *run.cfg.input_shape], "input_layout": INPUT_LAYOUT}


def _training_summary(run: RunInfo) -> dict[str, Any]:
    summary = {k: v for k, v in run.config.items() if k not in ("format", "version", "dsp", "classes")}
    summary["run"] = run.path.resolve().name
    return summary


def tool_versions() -> dict[str, str]:
    """Versions of the tools that made (and can run) the bundle."""
    out = {"python": platform.python_version(), "edgecnn": edgecnn_version}
    for package in TOOL_PACKAGES:
        try:
            out[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            out[package] = "not installed"
    return out
