"""Export: every model runs in its runtime, matches Keras, the C array compiles, golden vectors
reproduce from the bundle alone, metadata travels inside the model files, failures leave nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from edgecnn import dsp
from edgecnn.errors import BundleError, ConfigError, InputError
from edgecnn.rundir import read_run
from export import carray
from export.bundle import MANIFEST_FILE, TensorSpec, load_bundle
from export.footprint import count_params_macs, layer_costs, tflm_arena
from export.writer import DEFAULT_FORMATS, export_bundle, parse_formats, stratified_sample


def _litert(path: Path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    return interpreter


def _run_litert(path: Path, inputs: np.ndarray) -> np.ndarray:
    interpreter = _litert(path)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    results = []
    for x in inputs:
        interpreter.set_tensor(inp["index"], x[None].astype(inp["dtype"]))
        interpreter.invoke()
        results.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(results)


def _run_tflm(path: Path, inputs: np.ndarray) -> np.ndarray:
    from tflite_micro import runtime

    interpreter = runtime.Interpreter.from_file(str(path))
    results = []
    for x in inputs:
        interpreter.set_input(x[None], 0)
        interpreter.invoke()
        results.append(np.array(interpreter.get_output(0))[0])
    return np.stack(results)


def _run_ort(path: Path, inputs: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs.astype(np.float32)})[0]


def _keras_probabilities(run_dir: Path, images: np.ndarray) -> np.ndarray:
    import keras

    model = keras.models.load_model(read_run(run_dir).model_path, compile=False)
    return np.asarray(model(images, training=False))


@pytest.fixture(scope="module")
def features(tiny_run_dir) -> np.ndarray:
    run = read_run(tiny_run_dir)
    windows, _ = run.calibration()
    return dsp.features(windows[::8], run.cfg)  # 12 windows of both classes


def test_every_model_loads_and_runs_in_its_runtime(tiny_bundle, tiny_run_dir, features):
    bundle = load_bundle(tiny_bundle)
    expected = _keras_probabilities(tiny_run_dir, features)
    for entry in bundle.models.values():
        path = bundle.model_path(entry)
        x = entry.input.quantize(features)
        if entry.format == "tflite":
            outputs = [_run_litert(path, x), _run_tflm(path, x)]
        else:
            outputs = [_run_ort(path, x)]
        for raw in outputs:
            probs = entry.output.dequantize(raw)
            assert probs.shape == (len(features), 2)
            tolerance = 1e-4 if entry.dtype == "float32" else 0.05
            np.testing.assert_allclose(probs, expected, atol=tolerance, err_msg=entry.file)


def test_int8_tflite_tensors_match_the_manifest(tiny_bundle):
    from tflite_micro import runtime

    bundle = load_bundle(tiny_bundle)
    entry = bundle.model("tflite", "int8")
    interpreter = _litert(bundle.model_path(entry))
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    assert inp["dtype"] == np.int8 and out["dtype"] == np.int8
    assert tuple(inp["shape"]) == tuple(inp["shape_signature"]) == (1, 129, 44, 1)  # batch fixed
    assert inp["quantization"] == (pytest.approx(entry.input.scale, rel=1e-7), entry.input.zero_point)
    assert out["quantization"] == (pytest.approx(entry.output.scale, rel=1e-7), entry.output.zero_point)
    micro = runtime.Interpreter.from_file(str(bundle.model_path(entry))).get_input_details(0)
    assert float(micro["quantization_parameters"]["scales"][0]) == pytest.approx(entry.input.scale, rel=1e-7)
    assert int(micro["quantization_parameters"]["zero_points"][0]) == entry.input.zero_point


def test_float_onnx_matches_keras_to_1e4(tiny_bundle, tiny_run_dir, features):
    import onnx

    bundle = load_bundle(tiny_bundle)
    path = bundle.model_path(bundle.model("onnx", "float32"))
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert max(op.version for op in proto.opset_import if op.domain in ("", "ai.onnx")) >= 17
    got = _run_ort(path, features)  # dynamic batch: all windows at once
    np.testing.assert_allclose(got, _keras_probabilities(tiny_run_dir, features), atol=1e-4, rtol=0)


def test_int8_onnx_is_static_qdq_with_per_channel_weights(tiny_bundle):
    import onnx

    bundle = load_bundle(tiny_bundle)
    proto = onnx.load(str(bundle.model_path(bundle.model("onnx", "int8"))))
    onnx.checker.check_model(proto, full_check=True)
    ops = [node.op_type for node in proto.graph.node]
    assert ops.count("QuantizeLinear") >= 3 and ops.count("DequantizeLinear") >= 6
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    weights = [v for v in inits.values() if v.dtype == np.int8 and v.ndim == 4]
    assert len(weights) == 2  # both convolution kernels stored as int8, in 7 bits (no int16 saturation)
    assert all(np.abs(w.astype(int)).max() <= 64 for w in weights)
    per_channel = [node for node in proto.graph.node if node.op_type == "DequantizeLinear"
                   and node.input[1] in inits and inits[node.input[1]].size in (8, 16)]
    assert len(per_channel) >= 2  # one scale per output channel (8 and 16 filters)


def test_int8_onnx_fused_kernels_compute_what_the_qdq_graph_defines(trained_bundle, trained_data):
    """ONNX Runtime's fused 8-bit kernels against the same graph run op by op in float (optimisation
    off: QuantizeLinear, DequantizeLinear and float Conv, the QDQ definition). With signed int8
    activations, x86 CPUs without AVX-VNNI saturate an int16 sum inside the first convolution and
    the trained model's output moved by up to 190 steps of its last quantiser with 8-bit weights; with
    7-bit weights (reduce_range) it must stay within one step on every window and never change the
    predicted class."""
    import onnx
    import onnxruntime as ort

    from edgecnn import parity

    bundle = load_bundle(trained_bundle)
    path = bundle.model_path(bundle.model("onnx", "int8"))
    images = parity.select_data(bundle, trained_data).images

    def run(level):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return session.run(None, {session.get_inputs()[0].name: images})[0]

    fused = run(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    reference = run(ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    proto = onnx.load(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    last = next(n for n in reversed(proto.graph.node) if n.op_type == "DequantizeLinear")
    step = float(inits[last.input[1]])  # the output quantiser's scale: one step of probability
    assert np.abs(fused - reference).max() <= step * 1.001
    np.testing.assert_array_equal(fused.argmax(1), reference.argmax(1))


def test_model_files_carry_the_dsp_config(tiny_bundle):
    import onnx

    from export.tflite_export import METADATA_NAME, read_metadata

    bundle = load_bundle(tiny_bundle)
    for entry in bundle.models.values():
        path = bundle.model_path(entry)
        if entry.format == "tflite":
            text = read_metadata(path.read_bytes())[METADATA_NAME].decode()
        else:
            text = {p.key: p.value for p in onnx.load(str(path)).metadata_props}["edgecnn"]
        meta = json.loads(text)
        assert meta["dsp"] == bundle.manifest["dsp"], entry.file
        assert meta["classes"] == ["A", "B"] and meta["input_shape"] == [1, 129, 44, 1]


def test_c_array_compiles_and_holds_the_tflite_bytes(tiny_bundle, tmp_path):
    bundle = load_bundle(tiny_bundle)
    doc = bundle.manifest["c_array"]
    source = (tiny_bundle / doc["source"]).read_text()
    tflite = bundle.model_path(bundle.model("tflite", "int8")).read_bytes()
    assert carray.parse_c_array(source) == tflite
    assert f"const unsigned int {doc['length_symbol']} = {len(tflite)};" in source
    for compiler in ("gcc", "g++"):
        if shutil.which(compiler) is None:
            pytest.skip(f"{compiler} is not installed")
        obj = tmp_path / f"{compiler}.o"
        subprocess.run([compiler, "-std=c++17", "-Wall", "-Werror", "-c", str(tiny_bundle / doc["source"]),
                        "-o", str(obj)], check=True, capture_output=True)
    # link against a program that checks alignment and length and dumps the bytes
    main = tmp_path / "main.cc"
    main.write_text(
        f'#include <cstdint>\n#include <cstdio>\n#include "{doc["header"]}"\n'
        "int main() {\n"
        f"  if (reinterpret_cast<std::uintptr_t>({doc['symbol']}) % 16 != 0) return 3;\n"
        f"  std::fwrite({doc['symbol']}, 1, {doc['length_symbol']}, stdout);\n  return 0;\n}}\n")
    exe = tmp_path / "dump"
    subprocess.run(["g++", "-std=c++17", "-I", str(tiny_bundle), str(main), str(tiny_bundle / doc["source"]),
                    "-o", str(exe)], check=True, capture_output=True)
    result = subprocess.run([str(exe)], capture_output=True, check=True)
    assert result.stdout == tflite


def test_golden_vectors_reproduce_from_the_bundle_alone(tiny_bundle, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(tiny_bundle, moved)  # nothing but the bundle folder
    bundle = load_bundle(moved)
    gold = bundle.golden()
    entry = bundle.model("tflite", "int8")
    assert gold["windows"].shape == (4, bundle.cfg.window_samples)
    assert sorted(gold["labels"].tolist()) == [0, 0, 1, 1]
    magnitude = dsp.spectrogram(gold["windows"], bundle.cfg)
    np.testing.assert_allclose(magnitude, gold["magnitude"], rtol=1e-6, atol=1e-9)
    feats = dsp.features(gold["windows"], bundle.cfg)
    np.testing.assert_array_equal(feats, gold["features"])
    manifest_input = bundle.manifest["models"][entry.file]["input"]
    q = TensorSpec(name="input", shape=(1, 129, 44, 1), dtype="int8", scale=manifest_input["scale"],
                   zero_point=manifest_input["zero_point"]).quantize(feats)
    np.testing.assert_array_equal(q, gold["input_int8"])
    # golden outputs are the microcontroller kernels' (tflite-micro); LiteRT's default (XNNPACK)
    # path agrees to two quantisation steps
    np.testing.assert_array_equal(_run_tflm(bundle.model_path(entry), q), gold["output_int8"])
    assert np.abs(_run_litert(bundle.model_path(entry), q).astype(int) - gold["output_int8"]).max() <= 2
    np.testing.assert_allclose(gold["probabilities"], entry.output.dequantize(gold["output_int8"]))


def test_footprint_in_the_manifest_is_measured(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    fp = bundle.footprint
    entry = bundle.model("tflite", "int8")
    assert fp["flash_bytes"] == entry.bytes == bundle.model_path(entry).stat().st_size
    arena = tflm_arena(bundle.model_path(entry))
    assert fp["arena_bytes_tflm"] == arena["total"] == entry.arena_bytes
    assert arena["head"] + arena["tail"] == arena["total"]
    # the arena must at least hold the int8 input image and the first conv's activations (64x21x8)
    assert arena["head"] >= 129 * 44 + 64 * 21 * 8
    buffers = fp["device_buffers"]
    # from first principles for 256-sample blocks and 256-sample frames: two DMA half-buffers of int16
    # plus a float32 history of a frame and a block; one complex64 frame; int8 columns as the model input
    assert buffers["ring_buffer_bytes"] == 2 * 256 * 2 + (256 + 256) * 4
    assert buffers["stft_scratch_bytes"] == 256 * 8
    assert buffers["rolling_image_bytes"] == 129 * 44
    assert buffers["total_bytes"] == sum(buffers[k] for k in ("ring_buffer_bytes", "stft_scratch_bytes",
                                                              "rolling_image_bytes", "smoothing_bytes"))
    assert set(buffers["dsp_working_memory"]) == {"numpy", "cmsis-f32", "cmsis-q15"}
    assert "64-bit" in fp["arena_note"]


def test_params_and_macs_are_counted_from_the_layers(tiny_run_dir):
    import keras

    model = keras.models.load_model(read_run(tiny_run_dir).model_path, compile=False)
    params, macs = count_params_macs(model)
    assert params == model.count_params()
    # conv1 64x21x8 outputs x 9 taps; conv2 31x10x16 x 9 x 8; pooling multiplies nothing; dense 16x2
    assert macs == 64 * 21 * 8 * 9 + 31 * 10 * 16 * 9 * 8 + 16 * 2


def test_params_and_macs_of_every_supported_layer_kind():
    import keras

    inp = keras.Input((32, 16, 3))
    x = keras.layers.Conv2D(8, (3, 5), strides=(1, 2), padding="same", groups=1)(inp)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="valid")(x)
    x = keras.layers.SeparableConv2D(12, 3, padding="same", use_bias=False)(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.AveragePooling2D(2, strides=1)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(0.1)(x)
    out = keras.layers.Dense(3, activation="softmax")(x)
    inner = keras.Model(inp, out)
    outer = keras.Sequential([keras.Input((32, 16, 3)), inner])
    params, macs = count_params_macs(outer)
    assert params == outer.count_params() == inner.count_params()
    kinds = [c.kind for c in layer_costs(outer)]
    assert "DepthwiseConv2D" in kinds and "SeparableConv2D" in kinds  # nested model flattened
    conv = 32 * 8 * 8 * (3 * 5 * 3)
    depthwise = 30 * 6 * 16 * 9
    separable = 30 * 6 * (9 * 16 + 16 * 12)
    dense = 14 * 2 * 12 * 3  # pooling layers multiply nothing: 0 MACs
    assert macs == conv + depthwise + separable + dense


def test_parse_formats_and_stratified_sample():
    assert parse_formats(None) == DEFAULT_FORMATS
    assert parse_formats("onnx-float32") == ("tflite_int8", "onnx_float32")
    assert parse_formats("all")[-1] == "c_array" and len(parse_formats("all")) == 7
    with pytest.raises(ConfigError, match="unknown export format 'tflite8'"):
        parse_formats("tflite8")
    labels = np.array([0] * 90 + [1] * 10)
    picked = stratified_sample(labels, 20)
    assert len(picked) == 20 and np.bincount(labels[picked]).tolist() == [18, 2]
    assert np.array_equal(picked, stratified_sample(labels, 20))
    assert np.bincount(labels[stratified_sample(np.array([0] * 99 + [1]), 5)]).tolist() == [4, 1]
    assert len(stratified_sample(labels, 500)) == 100


def test_failure_halfway_leaves_no_bundle_and_keeps_the_old_one(tiny_run_dir, tiny_bundle, tmp_path,
                                                              monkeypatch):
    from export import golden

    def explode(*args, **kwargs):
        raise RuntimeError("injected failure after the models were written")

    monkeypatch.setattr(golden, "golden_vectors", explode)
    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="injected"):
        export_bundle(tiny_run_dir, fresh, formats="tflite_int8", quiet=True)
    assert list(tmp_path.iterdir()) == []

    old = tmp_path / "old"
    shutil.copytree(tiny_bundle, old)
    before = {str(p.relative_to(old)): p.read_bytes() for p in old.rglob("*") if p.is_file()}  # firmware/ too
    with pytest.raises(RuntimeError, match="injected"):
        export_bundle(tiny_run_dir, old, formats="tflite_int8", force=True, quiet=True)
    assert {str(p.relative_to(old)): p.read_bytes() for p in old.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]
    load_bundle(old)


def test_export_refuses_bad_inputs_before_converting(tiny_run_dir, tiny_bundle, tmp_path):
    with pytest.raises(InputError, match="already exists; .* --force"):
        export_bundle(tiny_run_dir, tiny_bundle)
    with pytest.raises(ConfigError, match="calibration=0 must be a positive"):
        export_bundle(tiny_run_dir, tmp_path / "b", calibration=0)
    with pytest.raises(InputError, match="not a run directory"):
        export_bundle(tmp_path / "no_run", tmp_path / "b")
    bad = tmp_path / "run"
    shutil.copytree(tiny_run_dir, bad)
    np.savez(bad / "calibration.npz", windows=np.zeros((3, 500), np.float32), labels=np.zeros(3))
    with pytest.raises(InputError, match=r"calibration windows have shape \(3, 500\)"):
        export_bundle(bad, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_optional_tflite_variants_and_cli(tiny_run_dir, tmp_path, monkeypatch, capsys):
    from edgecnn import cli

    monkeypatch.setattr(cli, "COMMANDS", ("export", "inspect"))  # other commands land elsewhere
    out = tmp_path / "bundle"
    code = cli.main(["export", str(tiny_run_dir), "--out", str(out), "--formats",
                     "tflite-float16,tflite_dynamic", "--calibration", "16", "--quiet"])
    assert code == 0
    bundle = load_bundle(out)
    assert sorted(bundle.models) == ["model_dynamic.tflite", "model_float16.tflite", "model_int8.tflite"]
    assert bundle.manifest["calibration"]["windows"] == 16
    assert bundle.manifest["calibration"]["per_class"] == {"A": 8, "B": 8}
    features = bundle.golden()["features"]
    for name in ("model_float16.tflite", "model_dynamic.tflite"):
        assert bundle.models[name].arena_bytes is None  # tflite-micro has no float16/hybrid kernels
        with pytest.raises(BundleError, match="tflite-micro cannot load the model"):
            tflm_arena(out / name)
        probs = _run_litert(out / name, features)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    capsys.readouterr()

    assert cli.main(["inspect", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["classes"] == ["A", "B"] and info["dsp"]["input_shape"] == [1, 129, 44, 1]
    assert info["ram_total_bytes"] == info["footprint"]["arena_bytes_tflm"] + info["footprint"][
        "device_buffers"]["total_bytes"]
    assert {m["file"] for m in info["models"]} == set(bundle.models)

    report = tmp_path / "inspect.json"
    assert cli.main(["inspect", str(out), "--json", str(report)]) == 0
    assert json.loads(report.read_text()) == info
    assert "tensor arena (TFLM)" in capsys.readouterr().out

    assert cli.main(["export", str(tiny_run_dir), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    (out / "model_int8.tflite").write_bytes(b"tampered")
    assert cli.main(["inspect", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model_int8.tflite" in err


def test_inspect_text_shows_models_and_footprint(tiny_bundle, monkeypatch, capsys):
    from edgecnn import cli

    monkeypatch.setattr(cli, "COMMANDS", ("export", "inspect"))
    assert cli.main(["inspect", str(tiny_bundle)]) == 0
    text = capsys.readouterr().out
    manifest = json.loads((tiny_bundle / MANIFEST_FILE).read_text())
    for name, entry in manifest["models"].items():
        assert name in text and f"{entry['bytes']:,d}" in text
    assert f"{manifest['footprint']['arena_bytes_tflm']:,d}" in text
    assert "int8 scale=" in text and "classes  A, B" in text and "transform log" in text


def test_export_is_reproducible(tiny_run_dir, tiny_bundle, tmp_path):
    again = load_bundle(export_bundle(tiny_run_dir, tmp_path / "again", quiet=True))
    first = load_bundle(tiny_bundle)
    assert {k: v.sha256 for k, v in again.models.items()} == {k: v.sha256 for k, v in first.models.items()}
    assert again.manifest["files"] == first.manifest["files"]


def test_a_capped_calibration_is_reported(tiny_run_dir, tmp_path, capsys):
    from edgecnn import cli

    code = cli.main(["export", str(tiny_run_dir), "--out", str(tmp_path / "b"), "--formats", "tflite_int8",
                     "--calibration", "400", "--quiet"])
    assert code == 0
    assert capsys.readouterr().err == ("edgecnn export: note: --calibration 400 asked for more windows than the run "
                                       "stores (96 in its calibration.npz); calibrated on 96\n")
    assert load_bundle(tmp_path / "b").manifest["calibration"]["windows"] == 96
    code = cli.main(["export", str(tiny_run_dir), "--out", str(tmp_path / "c"), "--formats", "tflite_int8",
                     "--calibration", "50", "--quiet"])
    assert code == 0 and capsys.readouterr().err == ""  # not capped: nothing to say
