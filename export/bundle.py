"""The bundle: the contract between training and the device. Schema, hashing, atomic writing, reading.

A bundle is a folder with ``manifest.json`` (format ``edgecnn-bundle``, ``schema_version`` 1; every
field is described in ``docs/bundle.md``) and the files it lists: model files under ``models`` and
other files (golden vectors, the C array) under ``files``, each with its sha256 and size.
``load_bundle`` refuses anything incomplete, tampered with, of a newer schema or of an unknown
feature version, with one ``BundleError`` line.

Device side: this module imports numpy and edgecnn's config only. It must never import TensorFlow,
tf2onnx or keras (a test imports it in a fresh interpreter and checks ``sys.modules``).
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

BUNDLE_FORMAT = "edgecnn-bundle"
SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
GOLDEN_FILE = "golden.npz"
#: Golden vectors of the q15 DSP path (firmware_sim.golden_vectors), when the device declares cmsis-q15.
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
        x = np.asarray(x, dtype=np.float32)
        if self.scale is None:
            return x
        info = np.iinfo(np.dtype(self.dtype))
        scaled = x.astype(np.float64) / self.scale
        rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
        return np.clip(rounded + self.zero_point, info.min, info.max).astype(self.dtype)

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
        _check_plain_name(file, where)
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
        return dict(self.manifest.get("footprint") or {})

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


def load_bundle(path: str | Path, *, verify_hashes: bool = True) -> Bundle:
    """Open and verify a bundle (schema, feature version, every listed file's size and sha256)."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path}: not a bundle directory "
                          f"(write one with `edgecnn export RUN_DIR --out {path}`)")
    manifest_path = path / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise BundleError(
            f"{path}: no {MANIFEST_FILE}; not an edgecnn bundle or an incomplete export") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"{manifest_path}: format {found!r} is not {BUNDLE_FORMAT!r}")
    version = manifest.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise BundleError(f"{manifest_path}: schema_version {version!r} is not a positive integer")
    if version > SCHEMA_VERSION:
        raise BundleError(f"{manifest_path}: schema_version {version} is newer than this edgecnn reads "
                          f"({SCHEMA_VERSION}); upgrade edgecnn")
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{manifest_path}: schema_version {version} is not supported (expected {SCHEMA_VERSION})")
    try:
        cfg = SpectrogramConfig.from_dict(manifest.get("dsp"))
    except ConfigError as exc:
        raise BundleError(f"{manifest_path}: dsp: {exc}") from None
    classes = manifest.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
        raise BundleError(f"{manifest_path}: 'classes' must list at least two class names, got {classes!r}")
    expected_shape = [1, *cfg.input_shape]
    shape = (manifest.get("input") or {}).get("shape")
    if shape != expected_shape:
        raise BundleError(f"{manifest_path}: input shape {shape!r} does not match the DSP config's "
                          f"{expected_shape}")
    models_doc = manifest.get("models")
    if not isinstance(models_doc, dict) or not models_doc:
        raise BundleError(f"{manifest_path}: 'models' must name at least one model file")
    models = {file: ModelEntry.from_dict(file, data) for file, data in models_doc.items()}
    for entry in models.values():
        _verify_file(path, entry.file, entry.bytes, entry.sha256, verify_hashes)
    files_doc = manifest.get("files", {})
    if not isinstance(files_doc, dict):
        raise BundleError(f"{manifest_path}: 'files' must be an object")
    for file, data in files_doc.items():
        where = f"{MANIFEST_FILE}: files[{file!r}]"
        _check_plain_name(file, where)
        try:
            size, digest = int(data["bytes"]), str(data["sha256"])
        except (KeyError, TypeError, ValueError):
            raise BundleError(f"{where}: needs 'bytes' and 'sha256'") from None
        _verify_file(path, file, size, digest, verify_hashes)
    golden = manifest.get("golden")
    if golden is not None and golden not in files_doc:
        raise BundleError(f"{manifest_path}: golden file {golden!r} is not listed under 'files'")
    _check_device(manifest.get("device"), files_doc, manifest_path)
    return Bundle(path=path, manifest=manifest, cfg=cfg, classes=list(classes), models=models)


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
    if golden is not None and golden not in files_doc:
        raise BundleError(f"{where}: golden_q15 file {golden!r} is not listed under 'files'")


def _verify_file(root: Path, name: str, size: int, digest: str, verify_hash: bool) -> None:
    file = root / name
    if not file.is_file():
        raise BundleError(
            f"{root}: {name} is listed in {MANIFEST_FILE} but missing; the bundle is incomplete")
    actual = file.stat().st_size
    if actual != size:
        raise BundleError(f"{file}: {actual} bytes, the manifest says {size}; the file was modified")
    if verify_hash and sha256_file(file) != digest:
        raise BundleError(f"{file}: sha256 does not match the manifest; the file was modified")


def _check_plain_name(name: str, where: str) -> None:
    # A manifest must not point outside its own folder.
    if not name or name != Path(name).name or name in (".", ".."):
        raise BundleError(f"{where}: {name!r} is not a plain file name inside the bundle")


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


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
