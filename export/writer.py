"""``export_bundle``: a run directory in, a verified bundle folder out, written atomically.

Order of work: read the run, pick a stratified calibration sample of its training windows,
convert every requested model into a temporary folder next to the destination, measure the
footprint, compute golden vectors, then finish the manifest:

1. the manifest is built with every listed file but the generated ones (each with its sha256);
2. ``export.bundle.bundle_digest(manifest)`` gives the bundle digest (the one definition);
3. ``_write_generated(build, manifest, digest)`` writes the files that embed the digest (the C
   header ``model_int8_data.h`` and the ``firmware/`` folder of ``export.firmware``) and lists each with
   ``build.add_generated(name, role)``: they go under the manifest's ``generated`` section, which the
   digest leaves out and the signature covers;
4. ``bundle_digest`` and ``generated`` are stored, ``manifest.json`` is written, and with ``sign`` the
   manifest is signed into ``signature.json``;

then the folder is renamed into place. Any exception on the way removes the temporary folder; an
existing bundle stays untouched.

With ``dsp``/``adc`` the manifest declares the device's DSP backend and converter (section
``device``; the device side then uses them by default), the footprint counts that backend's
buffers and tables, and for ``cmsis-q15`` the q15 golden vectors (``golden_q15.npz``, every
integer stage of one frame per golden window) are added and listed with their sha256.

Training side: TensorFlow, tf2onnx and onnx are imported inside ``export_bundle`` only.
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from edgecnn.rundir import RunInfo, load_keras_model, read_run
from export import carray, footprint, golden
from export.bundle import (
    BUNDLE_FORMAT,
    C_DIGEST_MACRO,
    DIGEST_FIELD,
    GENERATED_SECTION,
    GOLDEN_FILE,
    GOLDEN_Q15_FILE,
    INPUT_LAYOUT,
    MANIFEST_FILE,
    MODEL_METADATA_KEY,
    SCHEMA_VERSION,
    ModelEntry,
    TensorSpec,
    atomic_directory,
    bundle_digest,
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
                  progress: Callable[[str], None] | None = None, quiet: bool = False,
                  dsp: str | None = None, adc: Any = None, sign: str | Path | None = None) -> Path:
    """Write the bundle of a run directory to ``out_dir`` and return its path.

    ``formats``: keys of ``ALL_FORMATS`` (default ``DEFAULT_FORMATS``; ``tflite_int8`` always).
    ``calibration``: how many training windows (stratified) calibrate the int8 models.
    ``progress(message)`` is told each stage. ``quiet`` swallows the converters' native logging.
    ``dsp`` (a ``firmware_sim.dsp_backends`` name) and ``adc`` (an ``ADC`` or its ``to_dict()``)
    declare the device; without either the manifest has no ``device`` section.
    ``sign``: an Ed25519 private key file (``edgecnn keygen``); the bundle then carries
    ``signature.json`` over its manifest.
    """
    signing_key = None
    if sign is not None:
        from export import signing

        signing_key = signing.load_private_key(sign)  # refuse a bad key before any slow work
    run = read_run(run_dir)
    wanted = parse_formats(formats)
    device = device_section(dsp, adc, run.cfg)
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
        _write_bundle(tmp, run, wanted, windows, labels, int(calibration), say, quiet, device, signing_key)
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


@dataclasses.dataclass
class _Build:
    """What the export steps share while a bundle is being built in ``tmp``."""

    tmp: Path
    run: RunInfo
    model: Any
    images: np.ndarray
    """Calibration feature images (M, n_freq, n_frames, 1) float32."""
    metadata_json: str
    say: Callable[[str], None]
    quiet: bool
    params: int
    macs: int
    models: dict[str, ModelEntry] = dataclasses.field(default_factory=dict)
    files: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    generated: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    arena: dict[str, int] = dataclasses.field(default_factory=dict)

    def chatter(self) -> contextlib.AbstractContextManager:
        return _converter_chatter(self.quiet)

    def add_model(self, key: str, specs: tuple[TensorSpec, TensorSpec], arena: int | None) -> None:
        name, fmt, dtype = MODEL_FILES[key]
        record = file_record(self.tmp / name)
        self.models[name] = ModelEntry(file=name, format=fmt, dtype=dtype, sha256=record["sha256"],
                                       bytes=record["bytes"], input=specs[0], output=specs[1],
                                       parameters=self.params, macs=self.macs, arena_bytes=arena)

    def add_file(self, name: str, role: str) -> None:
        self.files[name] = {**file_record(self.tmp / name), "role": role}

    def add_generated(self, name: str, role: str) -> None:
        """List a file that embeds the bundle digest (written by ``_write_generated``)."""
        self.generated[name] = {**file_record(self.tmp / name), "role": role}

    @property
    def int8(self) -> ModelEntry:
        return self.models[MODEL_FILES[REQUIRED_FORMAT][0]]


def device_section(dsp: str | None, adc: Any, cfg) -> dict[str, Any] | None:
    """The manifest's ``device`` section, validated: None when nothing is declared.

    ``cmsis-q15`` works on ADC counts, so it always declares one (the default +/-16 g, 16-bit
    converter unless ``adc`` says otherwise).
    """
    from firmware_sim.adc import ADC
    from firmware_sim.dsp_backends import BACKENDS, working_memory_bytes

    if dsp is None and adc is None:
        return None
    if dsp is not None and dsp not in BACKENDS:
        raise ConfigError(f"unknown DSP backend {dsp!r}; known backends: {', '.join(BACKENDS)}")
    if dsp not in (None, "numpy") and cfg.feature != "spectrogram":
        raise ConfigError(f"the {dsp} DSP backend computes spectrograms; this run's feature is {cfg.feature!r}, "
                          f"which runs on the numpy backend (omit --dsp)")
    if dsp is not None:
        working_memory_bytes(dsp, cfg)  # refuses a frame length the backend has no tables for
    if adc is None and dsp == "cmsis-q15":
        adc = ADC()
    if adc is not None and not isinstance(adc, ADC):
        adc = ADC.from_dict(adc)
    out: dict[str, Any] = {"dsp": dsp or "numpy", "adc": adc.to_dict() if adc is not None else None}
    if dsp == "cmsis-q15":
        out["golden_q15"] = GOLDEN_Q15_FILE
    return out


def _write_bundle(tmp: Path, run: RunInfo, wanted: tuple[str, ...], windows: np.ndarray,
                  labels: np.ndarray, calibration: int, say: Callable[[str], None], quiet: bool,
                  device: dict[str, Any] | None = None, signing_key: Any = None) -> None:
    say(f"loading {run.model_path}")
    with _converter_chatter(quiet):
        model = load_keras_model(run.model_path)
    _check_model(model, run)
    params, macs = footprint.count_params_macs(model)
    sample = stratified_sample(labels, calibration)
    say(f"computing features of {len(sample)} calibration windows")
    build = _Build(tmp=tmp, run=run, model=model, images=dsp.features(windows[sample], run.cfg),
                   metadata_json=json.dumps(_model_metadata(run), sort_keys=True), say=say, quiet=quiet,
                   params=params, macs=macs)
    for key in wanted:
        if key in MODEL_FILES and MODEL_FILES[key][1] == "tflite":
            _write_tflite(build, key)
    _write_onnx(build, wanted)
    c_array_doc = _write_c_array(build) if C_ARRAY in wanted else None
    _write_golden(build, windows, labels)
    if device and device.get("golden_q15"):
        _write_golden_q15(build, windows, labels, device)
    firmware_doc = _firmware_doc(build, device)
    manifest = _manifest(build, c_array_doc, device, firmware_doc, calibration={
        "windows": int(len(sample)), "available": int(len(labels)),
        "per_class": _class_counts(labels[sample], run.classes), "seed": CALIBRATION_SEED})
    digest = bundle_digest(manifest)
    say(f"bundle digest {digest}")
    _write_generated(build, manifest, digest)
    manifest[GENERATED_SECTION] = build.generated
    manifest[DIGEST_FIELD] = digest
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")  # last but the signature
    if signing_key is not None:
        from export import signing

        say(f"signed with ed25519 key {signing.write_signature(tmp, manifest, signing_key)}")


def _write_generated(build: _Build, manifest: dict[str, Any], digest: str) -> None:
    """Write the files that embed the bundle digest; list each with ``build.add_generated``.

    ``manifest`` is final but for ``generated`` and ``bundle_digest``; nothing here may change it.
    """
    c_array = manifest.get("c_array")
    if c_array:
        build.say(f"writing {c_array['header']}")
        (build.tmp / c_array["header"]).write_text(
            carray.c_header(c_array["symbol"], bundle_digest=digest, digest_macro=C_DIGEST_MACRO))
        build.add_generated(c_array["header"], "c_array")
    folder = (manifest.get("firmware") or {}).get("folder")
    if folder:
        from export import firmware

        build.say(f"writing {folder}/ (the C device library)")
        sources = firmware.firmware_sources(_firmware_inputs(build, manifest, digest))
        for path in firmware.write_sources(sources, build.tmp / folder):
            name = f"{folder}/{path.name}"
            build.add_generated(name, firmware.CONFIG_ROLE if path.name == firmware.CONFIG_HEADER else "firmware")


def _firmware_inputs(build: _Build, manifest: dict[str, Any], digest: str):
    from export import firmware

    entry = build.int8
    return firmware.FirmwareInputs(cfg=build.run.cfg, dsp_doc=manifest["dsp"], classes=list(build.run.classes),
                                   digest=digest, input_spec=entry.input, output_spec=entry.output,
                                   arena_bytes=build.arena["total"], model=(build.tmp / entry.file).read_bytes(),
                                   policy=manifest.get(firmware.POLICY_KEY), device=manifest.get("device"))


def _firmware_doc(build: _Build, device: dict[str, Any] | None) -> dict[str, Any]:
    """The manifest's ``firmware`` section: the generated folder, or why the generator cannot
    express this bundle (the export goes on: the Python device runtime still runs it)."""
    from export import firmware
    from export.tflite_reader import read_tflite

    try:
        firmware.check_expressible(build.run.cfg, build.run.cfg.to_dict(), device)
        firmware.resolver_methods(read_tflite((build.tmp / build.int8.file).read_bytes()).operators)
    except ConfigError as exc:
        build.say(f"no firmware/: {exc}")
        return {"folder": None, "reason": str(exc)}
    return {"folder": firmware.FIRMWARE_DIR, "generator": firmware.GENERATOR_VERSION}


def _write_tflite(build: _Build, key: str) -> None:
    from export import tflite_export

    name, _, dtype = MODEL_FILES[key]
    build.say(f"converting {name}")
    images = build.images
    with build.chatter():
        flat = tflite_export.convert(build.model, dtype,
                                     representative=(images[i:i + 1] for i in range(len(images))))
        flat = tflite_export.add_metadata(flat, MODEL_METADATA_KEY, build.metadata_json.encode())
        (build.tmp / name).write_bytes(flat)
        specs = tflite_export.tensor_specs(build.tmp / name)
    arena = _arena_or_none(build.tmp / name, required=(key == REQUIRED_FORMAT))
    if key == REQUIRED_FORMAT:
        build.arena = arena
    build.add_model(key, specs, arena["total"] if arena else None)


def _write_onnx(build: _Build, wanted: tuple[str, ...]) -> None:
    if "onnx_float32" not in wanted and "onnx_int8" not in wanted:
        return
    import onnx

    from export import onnx_export

    meta = {MODEL_METADATA_KEY: build.metadata_json}
    float_name = MODEL_FILES["onnx_float32"][0]
    # the int8 model quantises the float one; keep that out of the bundle unless asked for
    float_path = build.tmp / (float_name if "onnx_float32" in wanted else f".{float_name}")
    build.say(f"converting {float_name}")
    with build.chatter():
        onnx.save(onnx_export.convert_float(build.model, meta), str(float_path))
    if "onnx_float32" in wanted:
        build.add_model("onnx_float32", onnx_export.tensor_specs(float_path), None)
    if "onnx_int8" in wanted:
        int8_name = MODEL_FILES["onnx_int8"][0]
        build.say(f"quantising {int8_name}")
        with build.chatter():
            onnx_export.quantize_int8(float_path, build.tmp / int8_name, build.images, meta)
        build.add_model("onnx_int8", onnx_export.tensor_specs(build.tmp / int8_name), None)
    if "onnx_float32" not in wanted:
        float_path.unlink()
    for leftover in build.tmp.glob("*-opt.onnx"):  # onnxruntime's pre-processing scratch, if any
        leftover.unlink()


def _write_golden(build: _Build, windows: np.ndarray, labels: np.ndarray) -> None:
    build.say("computing golden vectors")
    chosen = golden.select_golden(labels)
    entry = build.int8
    with build.chatter():
        vectors = golden.golden_vectors(windows[chosen], labels[chosen], build.run.cfg,
                                        build.tmp / entry.file, entry.input, entry.output)
    np.savez_compressed(build.tmp / GOLDEN_FILE, **vectors)
    build.add_file(GOLDEN_FILE, "golden")


def _write_golden_q15(build: _Build, windows: np.ndarray, labels: np.ndarray, device: dict[str, Any]) -> None:
    from firmware_sim.adc import ADC

    build.say("computing q15 golden vectors")
    chosen = golden.select_golden(labels)
    spec = build.int8.input
    vectors = golden.q15_golden_vectors(windows[chosen], build.run.cfg, ADC.from_dict(device["adc"]), frame=0,
                             input_quantization=(spec.scale, spec.zero_point))
    golden.write_golden_vectors(build.tmp / device["golden_q15"], vectors)
    build.add_file(device["golden_q15"], "golden_q15")


def _manifest(build: _Build, c_array_doc: dict[str, Any] | None, device: dict[str, Any] | None,
              firmware_doc: dict[str, Any], calibration: dict[str, Any]) -> dict[str, Any]:
    cfg, run, int8 = build.run.cfg, build.run, build.int8
    return {
        "format": BUNDLE_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "edgecnn_version": edgecnn_version,
        "classes": list(run.classes),
        "dsp": cfg.to_dict(),
        "input": {"shape": [1, *cfg.input_shape], "layout": INPUT_LAYOUT, "dtype": "float32",
                  "description": "normalised spectrogram features (edgecnn.dsp.features)"},
        "models": {name: entry.to_dict() for name, entry in build.models.items()},
        "files": build.files,
        "footprint": {
            "flash_bytes": int8.bytes,
            "arena_bytes_tflm": build.arena["total"],
            "arena_head_bytes": build.arena.get("head"),
            "arena_tail_bytes": build.arena.get("tail"),
            "arena_note": footprint.ARENA_NOTE,
            "device_buffers": footprint.device_buffers(cfg, dsp=device["dsp"] if device else None),
        },
        "calibration": calibration,
        "training": _training_summary(run),
        "golden": GOLDEN_FILE,
        **({"device": device} if device else {}),
        "c_array": c_array_doc,
        "firmware": firmware_doc,
        "tool_versions": tool_versions(),
    }


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


def _write_c_array(build: _Build) -> dict[str, Any]:
    entry = build.int8
    build.say(f"writing {C_ARRAY_STEM}.cc")
    symbol = carray.c_symbol(C_ARRAY_STEM)
    header, source = f"{C_ARRAY_STEM}.h", f"{C_ARRAY_STEM}.cc"
    comment = (f"{entry.file}: {entry.bytes} bytes, sha256 {entry.sha256}\n"
               f"input scale {entry.input.scale!r} zero_point {entry.input.zero_point}")
    data = (build.tmp / entry.file).read_bytes()
    (build.tmp / source).write_text(carray.c_source(data, symbol, header=header, comment=comment))
    build.add_file(source, "c_array")  # the header embeds the digest: written by _write_generated
    return {"source": source, "header": header, "symbol": symbol, "length_symbol": f"{symbol}_len",
            "model": entry.file, "alignment": 16, "digest_macro": C_DIGEST_MACRO}


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
    summary["run_path"] = str(run.path.resolve())
    split = run.split()
    if split:  # which recordings the run held out, so parity can evaluate exactly those
        summary["split"] = {k: split[k] for k in ("train", "validation", "test") if k in split}
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
