"""The TF-free bundle reader: schema checks, hashes, quantisation helpers, atomic writing."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecnn.config import FEATURE_VERSION, SpectrogramConfig
from edgecnn.errors import BundleError, InputError
from export.bundle import (
    BUNDLE_FORMAT,
    MANIFEST_FILE,
    SCHEMA_VERSION,
    TensorSpec,
    atomic_directory,
    load_bundle,
)
from tests.util import write_resealed

REPO = Path(__file__).resolve().parents[1]


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "copy"
    shutil.copytree(bundle, dest)
    return dest


def _edit_manifest(bundle: Path, edit) -> None:
    """Edit the manifest and recompute its digest (tests/test_bundle_integrity.py covers edits that don't)."""
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    edit(manifest)
    write_resealed(bundle, manifest)


def test_importing_export_modules_does_not_load_tensorflow():
    code = ("import sys\n"
            "import export, export.bundle, export.carray, export.footprint, export.golden\n"
            "import edgecnn.commands.inspect, edgecnn.commands.export\n"
            "import argparse\n"
            "sub = argparse.ArgumentParser().add_subparsers()\n"
            "edgecnn.commands.export.register(sub); edgecnn.commands.inspect.register(sub)\n"
            "import export.writer, export.tflite_export, export.onnx_export  # TF imported lazily only\n"
            "heavy = sorted(m for m in sys.modules\n"
            "               if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))\n"
            "print(heavy)\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_load_bundle_gives_config_classes_and_models(tiny_bundle, tiny_run_dir):
    from edgecnn.rundir import read_run

    bundle = load_bundle(tiny_bundle)
    assert bundle.cfg == read_run(tiny_run_dir).cfg
    assert bundle.classes == ["A", "B"]
    assert set(bundle.models) == {"model_int8.tflite", "model_float32.tflite", "model_float32.onnx",
                                  "model_int8.onnx"}
    int8 = bundle.model()
    assert (int8.format, int8.dtype, int8.file) == ("tflite", "int8", "model_int8.tflite")
    assert bundle.model_path(int8) == tiny_bundle / "model_int8.tflite"
    assert int8.input.shape == (1, *bundle.cfg.input_shape)
    assert bundle.manifest["format"] == BUNDLE_FORMAT and bundle.manifest["schema_version"] == SCHEMA_VERSION
    assert bundle.manifest["dsp"]["feature_version"] == FEATURE_VERSION
    assert set(bundle.golden()) >= {"windows", "features", "input_int8", "output_int8"}
    training = bundle.manifest["training"]
    assert (training["arch"], training["seed"], training["data"]["windows"]) == ("tiny", 0, 96)
    assert bundle.manifest["tool_versions"]["tensorflow"].startswith("2.")


def test_missing_model_format_names_what_exists(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    with pytest.raises(BundleError, match=r"no tflite/float16 model .*tflite/int8.*onnx/float32"):
        bundle.model("tflite", "float16")
    with pytest.raises(BundleError, match="not a model of this bundle"):
        bundle.model_path("golden.npz")


def test_flipping_one_byte_of_any_listed_file_is_refused(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    listed = [*manifest["models"], *manifest["files"], *manifest["generated"]]
    assert len(listed) == 16  # 4 models, golden and the C array, its header, 9 firmware/ sources
    for name in listed:
        path = bundle / name
        original = path.read_bytes()
        data = bytearray(original)
        data[len(data) // 2] ^= 0x01
        path.write_bytes(bytes(data))
        with pytest.raises(BundleError, match=rf"{name}: sha256 does not match"):
            load_bundle(bundle)
        path.write_bytes(original)
    load_bundle(bundle)  # restored: loads again


def test_size_change_is_caught_even_without_hashing(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    with open(bundle / "model_int8.tflite", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="bytes, the manifest says"):
        load_bundle(bundle, verify_hashes=False)


def test_missing_file_and_missing_manifest_are_refused(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    (bundle / "model_int8.onnx").unlink()
    with pytest.raises(BundleError, match="model_int8.onnx is listed .* but missing"):
        load_bundle(bundle)
    (bundle / MANIFEST_FILE).unlink()
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(bundle)
    with pytest.raises(BundleError, match="not a bundle directory"):
        load_bundle(tmp_path / "nowhere")


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(schema_version=SCHEMA_VERSION + 1), "newer than this edgecnn reads"),
    (lambda m: m.update(schema_version="1"), "not a positive integer"),
    (lambda m: m.update(format="something-else"), "is not 'edgecnn-bundle'"),
    (lambda m: m["dsp"].update(feature_version=99), "feature_version 99 is not supported"),
    (lambda m: m["dsp"].update(nperseg=1), "nperseg=1"),
    (lambda m: m.update(classes=["A"]), "at least two class names"),
    (lambda m: m["input"].update(shape=[1, 129, 40, 1]), "does not match the DSP config"),
    (lambda m: m.update(models={"../model_int8.tflite": m["models"]["model_int8.tflite"]}),
     "not a file name inside the bundle"),
    (lambda m: m["models"]["model_int8.tflite"].pop("sha256"), "field 'sha256' is missing"),
    (lambda m: m["models"]["model_int8.tflite"].update(format="pb"), "format 'pb' unknown"),
    (lambda m: m["models"]["model_int8.tflite"]["input"].update(scale=0.0), "must be finite and > 0"),
    (lambda m: m["files"].pop("golden.npz"), "golden file 'golden.npz' is not listed"),
])
def test_manifest_errors_are_one_line_bundle_errors(tiny_bundle, tmp_path, edit, message):
    bundle = _copy(tiny_bundle, tmp_path)
    _edit_manifest(bundle, edit)
    with pytest.raises(BundleError, match=message) as info:
        load_bundle(bundle)
    assert "\n" not in str(info.value)


def test_manifest_that_is_not_json_is_refused(tiny_bundle, tmp_path):
    bundle = _copy(tiny_bundle, tmp_path)
    (bundle / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(bundle)


def test_tensor_spec_quantize_matches_tflite_rounding_and_saturates():
    spec = TensorSpec(name="x", shape=(4,), dtype="int8", scale=0.5, zero_point=3)
    x = np.array([0.25, -0.25, 0.75, -0.75, 100.0, -100.0, 0.0], dtype=np.float32)
    # x / scale = 0.5, -0.5, 1.5, -1.5: half away from zero, then + zero point, then saturate
    assert spec.quantize(x).tolist() == [4, 2, 5, 1, 127, -128, 3]
    assert spec.quantize(x).dtype == np.int8
    q = np.arange(-128, 128, dtype=np.int8)
    assert np.array_equal(spec.quantize(spec.dequantize(q)), q)
    assert spec.dequantize(np.array([3, 5], np.int8)).tolist() == [0.0, 1.0]


def test_float_tensor_spec_is_identity():
    spec = TensorSpec(name="x", shape=(2,), dtype="float32", scale=None, zero_point=None)
    x = np.array([1.5, -2.25])
    assert spec.quantize(x).dtype == np.float32
    assert np.array_equal(spec.quantize(x), x) and np.array_equal(spec.dequantize(x), x)


def test_atomic_directory_leaves_nothing_on_error_and_keeps_an_old_bundle(tmp_path):
    out = tmp_path / "bundle"
    with pytest.raises(RuntimeError, match="boom"), atomic_directory(out) as tmp:
        (tmp / "half.bin").write_bytes(b"x")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    with atomic_directory(out) as tmp:
        (tmp / MANIFEST_FILE).write_text(json.dumps({"format": BUNDLE_FORMAT, "n": 1}))
    assert json.loads((out / MANIFEST_FILE).read_text())["n"] == 1
    with pytest.raises(InputError, match="already exists; .* --force"):
        with atomic_directory(out):
            pass
    with pytest.raises(RuntimeError), atomic_directory(out, force=True) as tmp:
        (tmp / MANIFEST_FILE).write_text(json.dumps({"format": BUNDLE_FORMAT, "n": 2}))
        raise RuntimeError("halfway")
    assert json.loads((out / MANIFEST_FILE).read_text())["n"] == 1
    with atomic_directory(out, force=True) as tmp:
        (tmp / MANIFEST_FILE).write_text(json.dumps({"format": BUNDLE_FORMAT, "n": 3}))
    assert json.loads((out / MANIFEST_FILE).read_text())["n"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_atomic_directory_creates_missing_parents_but_not_through_a_file(tmp_path):
    with atomic_directory(tmp_path / "a" / "b" / "bundle") as tmp:
        (tmp / "x").write_text("1")
    assert (tmp_path / "a" / "b" / "bundle" / "x").read_text() == "1"
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is not a folder"):
        with atomic_directory(tmp_path / "file" / "bundle"):
            pass


def test_force_never_replaces_a_folder_that_is_not_a_bundle(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(InputError, match="not an edgecnn bundle; refusing"):
        with atomic_directory(precious, force=True):
            pass
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_bundle_config_round_trips_through_the_manifest(tiny_bundle):
    manifest = json.loads((tiny_bundle / MANIFEST_FILE).read_text())
    cfg = SpectrogramConfig.from_dict(manifest["dsp"])
    assert cfg.transform == "log" and len(cfg.norm_mean) == cfg.image_rows


def test_the_one_input_quantiser_rounds_half_away_from_zero_and_saturates():
    from export.bundle import quantize

    x = np.array([-1.5, -0.5, -0.49, 0.0, 0.49, 0.5, 1.5, 2.5, 1000.0, -1000.0], dtype=np.float32)
    np.testing.assert_array_equal(quantize(x, 1.0, 0), [-2, -1, 0, 0, 0, 1, 2, 3, 127, -128])
    np.testing.assert_array_equal(quantize(x, 0.5, -3), [-6, -4, -4, -3, -2, -2, 0, 2, 127, -128])
    assert quantize(x, 1.0, 0).dtype == np.int8 and quantize(x, 1.0, 128, "uint8")[0] == 126
    spec = TensorSpec(name="input", shape=(10,), dtype="int8", scale=0.5, zero_point=-3)
    scratch = (np.empty(10), np.empty(10))  # the device loop's buffers give the same integers
    np.testing.assert_array_equal(spec.quantize(x), quantize(x, 0.5, -3, scratch=scratch))
