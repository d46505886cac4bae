"""The bundle: the contract between training and the device. Schema, hashing, atomic writing, reading.

A bundle is a folder with ``manifest.json`` (format ``edgecnn-bundle``, ``schema_version`` 2; every
field is described in ``docs/bundle.md``) and the files it lists: model files under ``models``,
other files (golden vectors, the C array) under ``files``, and files that embed the bundle digest
(the C header, generated firmware) under ``generated``, each with its sha256 and size.

One **bundle digest** identifies a bundle everywhere: the sha256 of the canonical manifest without
``bundle_digest`` itself and without ``generated`` (``export.integrity.bundle_digest``, the one
definition, re-exported here; export calls it before writing the files that embed it). The manifest
stores it, so an edited manifest is caught without a signature; an optional Ed25519 signature
(``signature.json``, ``export.signing``) covers the whole manifest. ``export.integrity`` also reads
the folder's files (no symbolic links, regular files only) and checks the names listed.

``load_bundle`` refuses anything incomplete, tampered with, of another schema or of an unknown
feature version, with one ``BundleError`` line: the digest, the signature (when present or
required), every listed file (a regular file inside the folder, never through a symbolic link, of
the listed size and sha256), and the manifest's meaning against the int8/float TFLite files'
own tensors and embedded settings.

Device side: this module imports numpy, flatbuffers and edgecnn's config only (``cryptography``
lazily, for signatures). It must never import TensorFlow, tf2onnx or keras (a test imports it in a
fresh interpreter and checks ``sys.modules``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.config import SpectrogramConfig
from edgecnn.errors import BundleError, ConfigError, InputError
from export.integrity import (  # noqa: F401 - part of this module's API (writer, signing, tests)
    C_DIGEST_MACRO,
    DIGEST_EXCLUDED,
    DIGEST_FIELD,
    GENERATED_SECTION,
    MANIFEST_FILE,
    MAX_MANIFEST_BYTES,
    SIGNATURE_FILE,
    BundleFolder,
    bundle_digest,
    canonical_json,
    check_digest,
    check_embedded_digest,
    check_name,
    check_signature,
    parse_manifest,
)

BUNDLE_FORMAT = "edgecnn-bundle"
#: 2: ``bundle_digest`` and ``generated`` (a bundle without a digest cannot be told from an edited one).
SCHEMA_VERSION = 2
#: ``edgecnn parity`` results sit beside the bundle (:func:`parity_results_path`), never inside it.
PARITY_SUFFIX = ".parity.json"
ONNX_NOT_CROSS_CHECKED = ("ONNX files are checked by size and sha256 only; their embedded settings are not "
                          "cross-checked against the manifest (reading ONNX needs the onnx package)")
GOLDEN_FILE = "golden.npz"
#: Golden vectors of the q15 DSP path (export.golden.q15_golden_vectors), when the device declares cmsis-q15.
GOLDEN_Q15_FILE = "golden_q15.npz"
#: Keys of the optional manifest section ``device`` (the device's ADC and DSP backend).
DEVICE_KEYS = ("dsp", "adc", "golden_q15")
INPUT_LAYOUT = "NHWC (freq, time, channel)"
#: Key under which model files carry the bundle settings as JSON (TFLite metadata buffer name,
#: ONNX metadata_props key), so a lone model file still says how to feed it.
MODEL_METADATA_KEY = "edgecnn"

MODEL_FORMATS = ("tflite", "onnx")
MODEL_DTYPES = ("int8", "float32", "float16", "dynamic")
#: Tensor element types a TensorSpec may name.
TENSOR_DTYPES = ("int8", "uint8", "int16", "float32", "float16")


def quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str = "int8", *,
             scratch: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Float values -> integers of ``dtype``: ``clip(round_half_away_from_zero(x / scale) + zero_point)``,
    as TFLite's Quantize kernel rounds. The one definition: ``TensorSpec.quantize``, the device
    side's interpreters and the q15 golden vectors all call it.

    ``scratch``: two float64 arrays of ``x``'s shape to compute in (the device loop quantises one
    image per decision and keeps them between calls); fresh ones when None.
    """
    x = np.asarray(x, dtype=np.float32)
    if scratch is None or scratch[0].shape != x.shape:
        scratch = (np.empty(x.shape, dtype=np.float64), np.empty(x.shape, dtype=np.float64))
    scaled, t = scratch
    info = np.iinfo(np.dtype(dtype))
    np.divide(x, scale, out=scaled, dtype=np.float64)  # == x.astype(float64) / scale
    np.abs(scaled, out=t)
    t += 0.5
    np.floor(t, out=t)
    np.copysign(t, scaled, out=t)  # sign(scaled) * floor(|scaled| + 0.5)
    t += zero_point
    np.clip(t, float(info.min), float(info.max), out=t)
    return t.astype(dtype)


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One model input or output: name, shape, element type and its affine quantisation.

    ``real = scale * (q - zero_point)``; ``scale`` and ``zero_point`` are None for float tensors.
    A dimension of -1 in ``shape`` is dynamic (ONNX batch).
    """

    name: str
    shape: tuple
    dtype: str
    scale: float | None
    zero_point: int | None

    @property
    def is_quantized(self) -> bool:
        return self.scale is not None

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float values -> this tensor's integers (round half away from zero, as TFLite's
        Quantize kernel, then saturate). Float tensors: ``x`` as float32, unchanged."""
        if self.scale is None:
            return np.asarray(x, dtype=np.float32)
        return quantize(x, self.scale, self.zero_point, self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """This tensor's values -> float32 (identity cast for float tensors)."""
        q = np.asarray(q)
        if self.scale is None:
            return q.astype(np.float32)
        return (self.scale * (q.astype(np.float32) - np.float32(self.zero_point))).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "scale": self.scale, "zero_point": self.zero_point}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> TensorSpec:
        if not isinstance(data, dict):
            raise BundleError(f"{where}: expected a tensor description object, got {data!r}")
        try:
            shape = tuple(int(d) for d in data["shape"])
            dtype = str(data["dtype"])
            scale, zero_point = data["scale"], data["zero_point"]
            spec = cls(name=str(data["name"]), shape=shape, dtype=dtype,
                       scale=None if scale is None else float(scale),
                       zero_point=None if zero_point is None else int(zero_point))
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: malformed tensor description ({exc!r})") from None
        if dtype not in TENSOR_DTYPES:
            raise BundleError(f"{where}: tensor dtype {dtype!r} unknown (known: {list(TENSOR_DTYPES)})")
        if (spec.scale is None) != (spec.zero_point is None):
            raise BundleError(f"{where}: scale and zero_point must both be set or both be null")
        if spec.scale is not None and (not np.isfinite(spec.scale) or spec.scale <= 0):
            raise BundleError(f"{where}: quantisation scale {spec.scale!r} must be finite and > 0")
        if spec.scale is not None and dtype.startswith("float"):
            raise BundleError(f"{where}: a {dtype} tensor cannot carry a quantisation scale")
        return spec


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One model file of a bundle, as its manifest describes it."""

    file: str
    format: str
    dtype: str
    sha256: str
    bytes: int
    input: TensorSpec
    output: TensorSpec
    parameters: int | None
    macs: int | None
    arena_bytes: int | None

    @property
    def name(self) -> str:
        """``<format>_<dtype>``, e.g. ``tflite_int8``: the key ``--formats`` and runtimes use."""
        return f"{self.format}_{self.dtype}"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("file")
        out["input"], out["output"] = self.input.to_dict(), self.output.to_dict()
        return out

    @classmethod
    def from_dict(cls, file: str, data: Any) -> ModelEntry:
        where = f"{MANIFEST_FILE}: models[{file!r}]"
        if not isinstance(data, dict):
            raise BundleError(f"{where}: expected an object, got {type(data).__name__}")
        check_name(file, where)
        try:
            entry = cls(file=file, format=str(data["format"]), dtype=str(data["dtype"]),
                        sha256=str(data["sha256"]), bytes=int(data["bytes"]),
                        input=TensorSpec.from_dict(data["input"], f"{where}.input"),
                        output=TensorSpec.from_dict(data["output"], f"{where}.output"),
                        parameters=_optional_int(data.get("parameters")),
                        macs=_optional_int(data.get("macs")),
                        arena_bytes=_optional_int(data.get("arena_bytes")))
        except KeyError as exc:
            raise BundleError(f"{where}: field {exc.args[0]!r} is missing") from None
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{where}: malformed field ({exc})") from None
        if entry.format not in MODEL_FORMATS:
            raise BundleError(f"{where}: format {entry.format!r} unknown (known: {list(MODEL_FORMATS)})")
        if entry.dtype not in MODEL_DTYPES:
            raise BundleError(f"{where}: dtype {entry.dtype!r} unknown (known: {list(MODEL_DTYPES)})")
        return entry


@dataclasses.dataclass(frozen=True)
class Bundle:
    """A loaded, verified bundle: its manifest, DSP config, classes and model entries."""

    path: Path
    manifest: dict
    cfg: SpectrogramConfig
    classes: list[str]
    models: dict[str, ModelEntry]
    digest: str = ""
    """The bundle digest (64 hex digits): what export, inspect and stream print and firmware embeds."""
    signature: Any = None
    """``export.signing.SignatureStatus`` of a signed bundle (verified), None when unsigned."""
    checks_skipped: tuple[str, ...] = ()
    """Cross-checks this loader could not make, each as a short sentence (e.g. ONNX metadata)."""

    @property
    def listed_files(self) -> list[str]:
        """Every file the manifest lists (models, files, generated)."""
        return [*self.models, *_section(self.manifest, "files"), *_section(self.manifest, GENERATED_SECTION)]

    def unlisted_files(self) -> list[str]:
        """Files in the folder the manifest does not list (never read by the device side, not covered
        by the digest or the signature), e.g. results someone put there."""
        listed = {*self.listed_files, MANIFEST_FILE, SIGNATURE_FILE}
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*")
                      if (p.is_file() or p.is_symlink()) and str(p.relative_to(self.path)) not in listed)

    def model(self, format: str = "tflite", dtype: str = "int8") -> ModelEntry:  # noqa: A002
        """The model file of this format and dtype; BundleError naming what exists otherwise."""
        for entry in self.models.values():
            if entry.format == format and entry.dtype == dtype:
                return entry
        have = ", ".join(f"{e.format}/{e.dtype}" for e in self.models.values())
        raise BundleError(f"{self.path}: no {format}/{dtype} model in this bundle (it has: {have}); "
                          f"re-export with --formats {format}_{dtype}")

    def model_path(self, entry_or_name: ModelEntry | str) -> Path:
        """Path of a model file, from its entry or its file name."""
        name = entry_or_name.file if isinstance(entry_or_name, ModelEntry) else str(entry_or_name)
        if name not in self.models:
            raise BundleError(f"{self.path}: {name!r} is not a model of this bundle "
                              f"(models: {sorted(self.models)})")
        return self.path / name

    @property
    def footprint(self) -> dict:
        footprint = self.manifest.get("footprint")
        return dict(footprint) if isinstance(footprint, dict) else {}

    @property
    def device(self) -> dict | None:
        """The manifest's ``device`` section (``dsp``, ``adc``, ``golden_q15``), or None: older
        bundles and bundles exported without a declaration run the float DSP without an ADC."""
        device = self.manifest.get("device")
        return dict(device) if device else None

    @property
    def golden_path(self) -> Path | None:
        name = self.manifest.get("golden")
        return self.path / name if name else None

    def golden(self) -> dict[str, np.ndarray]:
        """The golden vectors (see docs/bundle.md): raw windows and every stage's expected output."""
        path = self.golden_path
        if path is None:
            raise BundleError(f"{self.path}: this bundle has no golden vectors")
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            raise BundleError(f"{path}: cannot read golden vectors ({exc})") from None


def load_bundle(path: str | Path, *, verify_hashes: bool = True, require_signature: Any = None) -> Bundle:
    """Open and verify a bundle: schema, digest, signature, every listed file, the models' own view.

    ``require_signature``: a public key (``export.signing.load_public_key``) or the path of a PEM
    public key file; the bundle must then carry a valid signature by that key. Without it a signed
    bundle's signature is still checked (against the key it names). ``verify_hashes=False`` skips
    only the files' sha256 (sizes, the digest and the signature are still checked).
    """
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory "
                          f"(write one with `edgecnn export RUN_DIR --out {path}`)")
    manifest_path = path / MANIFEST_FILE
    with BundleFolder(path) as folder:
        manifest = parse_manifest(folder.read(MANIFEST_FILE, limit=MAX_MANIFEST_BYTES, missing=(
            f"{path}: no {MANIFEST_FILE}; not an edgecnn bundle or an incomplete export")), manifest_path,
            BUNDLE_FORMAT)
        _check_schema(manifest, manifest_path)
        digest = check_digest(manifest, manifest_path)
        signature = check_signature(folder, manifest, require_signature)
        try:
            cfg = SpectrogramConfig.from_dict(manifest.get("dsp"))
        except ConfigError as exc:
            raise BundleError(f"{manifest_path}: dsp: {exc}") from None
        classes = manifest.get("classes")
        if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
            raise BundleError(f"{manifest_path}: 'classes' must list at least two class names, got {classes!r}")
        expected_shape = [1, *cfg.input_shape]
        input_doc = manifest.get("input")
        shape = input_doc.get("shape") if isinstance(input_doc, dict) else None
        if shape != expected_shape:
            raise BundleError(f"{manifest_path}: input shape {shape!r} does not match the DSP config's "
                              f"{expected_shape}")
        models_doc = manifest.get("models")
        if not isinstance(models_doc, dict) or not models_doc:
            raise BundleError(f"{manifest_path}: 'models' must name at least one model file")
        models = {file: ModelEntry.from_dict(file, data) for file, data in models_doc.items()}
        listed: set[str] = set()
        embedding: list[tuple[Path, bytes]] = []
        for entry in models.values():
            _check_model_shapes(entry, expected_shape, len(classes), manifest_path)
            listed.add(entry.file)
            data = folder.verify(entry.file, entry.bytes, entry.sha256, verify_hashes,
                                 keep=entry.format == "tflite")
            if entry.format == "tflite":
                _check_tflite(path / entry.file, data, entry, manifest)
        files_doc = manifest.get("files", {})
        generated_doc = manifest.get(GENERATED_SECTION, {})
        for section, doc in (("files", files_doc), (GENERATED_SECTION, generated_doc)):
            if not isinstance(doc, dict):
                raise BundleError(f"{manifest_path}: {section!r} must be an object")
            for file, data in doc.items():
                where = f"{MANIFEST_FILE}: {section}[{file!r}]"
                check_name(file, where)
                if file in listed:
                    raise BundleError(f"{where}: {file!r} is listed twice in the manifest")
                listed.add(file)
                try:
                    size, file_digest = int(data["bytes"]), str(data["sha256"])
                except (KeyError, TypeError, ValueError):
                    raise BundleError(f"{where}: needs 'bytes' and 'sha256'") from None
                content = folder.verify(file, size, file_digest, verify_hashes, keep=_embeds_digest(manifest, file))
                if content is not None:
                    embedding.append((path / file, content))
    golden = manifest.get("golden")
    if golden is not None and (not isinstance(golden, str) or golden not in files_doc):
        raise BundleError(f"{manifest_path}: golden file {golden!r} is not listed under 'files'")
    _check_device(manifest.get("device"), files_doc, manifest_path)
    for file, content in embedding:  # last: the checks above say more precisely what an edit broke
        check_embedded_digest(file, content, digest)
    notes = (ONNX_NOT_CROSS_CHECKED,) if any(e.format == "onnx" for e in models.values()) else ()
    return Bundle(path=path, manifest=manifest, cfg=cfg, classes=list(classes), models=models, digest=digest,
                  signature=signature, checks_skipped=notes)


def _check_schema(manifest: dict, manifest_path: Path) -> None:
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleError(f"{manifest_path}: schema_version {version!r} is not a positive integer")
    if version > SCHEMA_VERSION:
        raise BundleError(f"{manifest_path}: schema_version {version} is newer than this edgecnn reads "
                          f"({SCHEMA_VERSION}); upgrade edgecnn")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{manifest_path}: schema_version {version} is not supported (expected "
                          f"{SCHEMA_VERSION}: it carries no bundle digest); re-export the bundle")


def _check_tflite(file: Path, data: bytes, entry: ModelEntry, manifest: dict) -> None:
    """The manifest's meaning against the TFLite file's own: I/O tensors and embedded settings."""
    from export.tflite_reader import read_tflite

    try:
        model = read_tflite(data)
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise BundleError(f"{file}: not a readable TFLite flatbuffer ({exc})") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise BundleError(f"{file}: {len(model.inputs)} inputs and {len(model.outputs)} outputs; a bundle "
                          f"model has one of each")
    for role, spec, tensor in (("input", entry.input, model.inputs[0]), ("output", entry.output, model.outputs[0])):
        file_scale = tensor.scale[0] if len(tensor.scale) == 1 and tensor.scale[0] != 0.0 else None
        file_zero = tensor.zero_point[0] if file_scale is not None and len(tensor.zero_point) == 1 else None
        said = (spec.dtype, tuple(spec.shape), spec.scale, spec.zero_point)
        # The manifest keeps LiteRT's float64 view of the file's float32 scale: compare as float32.
        same = (spec.dtype == tensor.dtype and tuple(spec.shape) == tensor.shape and spec.zero_point == file_zero
                and (spec.scale is None) == (file_scale is None)
                and (spec.scale is None or np.float32(spec.scale) == np.float32(file_scale)))
        if not same:
            raise BundleError(f"{file}: the manifest gives the {role} as {_tensor_text(*said)}, the model file "
                              f"as {_tensor_text(tensor.dtype, tensor.shape, file_scale, file_zero)}; the "
                              f"manifest was edited or belongs to another model")
    settings = model.metadata.get(MODEL_METADATA_KEY)
    if settings is None:
        raise BundleError(f"{file}: carries no {MODEL_METADATA_KEY!r} metadata (classes, DSP config); "
                          f"not a model edgecnn exported")
    try:
        embedded = json.loads(settings)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{file}: its {MODEL_METADATA_KEY!r} metadata is not JSON ({exc})") from None
    for key in ("classes", "dsp"):
        if not isinstance(embedded, dict) or embedded.get(key) != manifest.get(key):
            raise BundleError(f"{file}: the model was exported with {key} {_brief(embedded, key)}, the manifest "
                              f"says {_brief(manifest, key)}; the manifest was edited or belongs to another model")


def _tensor_text(dtype: str, shape: tuple, scale: float | None, zero_point: int | None) -> str:
    quant = f" scale {scale!r} zero point {zero_point}" if scale is not None else ""
    return f"{dtype} {list(shape)}{quant}"


def _brief(doc: Any, key: str) -> str:
    value = doc.get(key) if isinstance(doc, dict) else None
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _embeds_digest(manifest: dict, file: str) -> bool:
    generated = _section(manifest, GENERATED_SECTION)
    if file not in generated:
        return False
    c_array = manifest.get("c_array")
    entry = generated[file]
    # the C array's header, and the generated firmware's edgecnn_config.h (export.firmware.CONFIG_ROLE)
    return ((isinstance(c_array, dict) and c_array.get("header") == file)
            or (isinstance(entry, dict) and entry.get("role") == "firmware_config"))


def _section(manifest: dict, key: str) -> dict:
    doc = manifest.get(key)
    return doc if isinstance(doc, dict) else {}


def _check_model_shapes(entry: ModelEntry, expected_input: list[int], n_classes: int, where: Path) -> None:
    # Each model must take the image the DSP config makes and give one probability per class, or
    # the device would feed it garbage; a batch dimension of -1 (dynamic, ONNX) is accepted.
    shape = list(entry.input.shape)
    if len(shape) != len(expected_input) or shape[0] not in (1, -1) or shape[1:] != expected_input[1:]:
        raise BundleError(f"{where}: {entry.file} takes input shape {shape}, but the DSP config makes "
                          f"{expected_input}; the manifest and the model disagree (re-export the bundle)")
    if not entry.output.shape or entry.output.shape[-1] != n_classes:
        raise BundleError(f"{where}: {entry.file} gives output shape {list(entry.output.shape)}, but the "
                          f"bundle has {n_classes} classes; the manifest and the model disagree")


def _check_device(device: Any, files_doc: dict, manifest_path: Path) -> None:
    """The optional ``device`` section: a known DSP backend, a valid ADC, a listed golden file."""
    if device is None:
        return
    where = f"{manifest_path}: device"
    if not isinstance(device, dict):
        raise BundleError(f"{where}: expected an object, got {type(device).__name__}")
    unknown = sorted(set(device) - set(DEVICE_KEYS))
    if unknown:
        raise BundleError(f"{where}: unknown keys {unknown}; known keys: {list(DEVICE_KEYS)}")
    # Lazy: firmware_sim imports this module, and its DSP and ADC modules are TF-free too.
    from firmware_sim.adc import ADC
    from firmware_sim.dsp_backends import BACKENDS

    dsp = device.get("dsp")
    if dsp is not None and dsp not in BACKENDS:
        raise BundleError(f"{where}: dsp {dsp!r} is not a known backend ({', '.join(BACKENDS)}); "
                          "upgrade edgecnn or re-export")
    if device.get("adc") is not None:
        try:
            ADC.from_dict(device["adc"])
        except ConfigError as exc:
            raise BundleError(f"{where}: adc: {exc}") from None
    golden = device.get("golden_q15")
    if golden is not None and (not isinstance(golden, str) or golden not in files_doc):
        raise BundleError(f"{where}: golden_q15 file {golden!r} is not listed under 'files'")


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def parity_results_path(bundle_dir: str | Path) -> Path:
    """Where ``edgecnn parity`` writes its results: beside the bundle, ``BUNDLE_DIR.parity.json``.

    Results derived from a bundle stay out of it: the bundle's content is what the digest and the
    signature cover, and a result written into it later would change neither yet sit among it.
    """
    bundle_dir = Path(bundle_dir)
    return bundle_dir.absolute().parent / f"{bundle_dir.absolute().name}{PARITY_SUFFIX}"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_record(path: str | Path) -> dict[str, Any]:
    """``{"sha256", "bytes"}`` of a file, as the manifest lists it."""
    path = Path(path)
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def check_output_dir(out_dir: str | Path, *, force: bool = False) -> Path:
    """Refuse an existing ``out_dir`` unless ``force`` and it is a bundle or an empty folder."""
    out_dir = Path(out_dir)
    if not out_dir.exists() and not out_dir.is_symlink():
        if out_dir.parent.exists() and not out_dir.parent.is_dir():
            raise InputError(f"{out_dir.parent} is not a folder; cannot write the bundle into it")
        return out_dir
    if not force:
        raise InputError(f"{out_dir} already exists; choose another --out or pass --force to replace it")
    if not out_dir.is_dir() or out_dir.is_symlink():
        raise InputError(f"{out_dir} exists and is not a folder; refusing to replace it even with --force")
    if any(out_dir.iterdir()) and not _looks_like_bundle(out_dir):
        raise InputError(f"{out_dir} is a non-empty folder that is not an edgecnn bundle; "
                         "refusing to replace it even with --force")
    return out_dir


def _looks_like_bundle(path: Path) -> bool:
    try:
        return json.loads((path / MANIFEST_FILE).read_text()).get("format") == BUNDLE_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


@contextlib.contextmanager
def atomic_directory(out_dir: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``out_dir``; rename it to ``out_dir`` on success.

    An exception inside the block removes the temporary folder and leaves ``out_dir`` as it was
    (absent, or the previous bundle). With ``force`` an existing bundle is replaced: it is moved
    aside, the new folder renamed into place, then the old one deleted.
    """
    out_dir = check_output_dir(out_dir, force=force)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700; a bundle is an ordinary folder
        if out_dir.exists():
            check_output_dir(out_dir, force=force)  # it may have appeared meanwhile
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "bundle")
            try:
                os.replace(tmp, out_dir)
            except OSError:
                os.replace(old / "bundle", out_dir)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
