import json

import numpy as np
import pytest

from edgecnn import parity, synth
from edgecnn.cli import main
from edgecnn.errors import InputError
from export.bundle import load_bundle
from tests.util import run_cli


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    """The windows the tiny run was trained on (synth n=96 seed=0) plus unseen machines (seed 5)."""
    root = tmp_path_factory.mktemp("parity_data")
    return {"train": synth.write_pickle(root / "train.pkl", synth.generate(n=96, seed=0, n_recordings=8)),
            "unseen": synth.write_pickle(root / "unseen.pkl", synth.generate(n=64, seed=5, n_recordings=8))}


def test_parity_cli_evaluates_every_format_on_the_runs_test_recordings(trained_bundle, trained_data, tmp_path):
    out = tmp_path / "parity.json"
    plot = tmp_path / "parity.png"
    proc = run_cli("parity", str(trained_bundle), "--data", str(trained_data), "--json", str(out),
                   "--plot", str(plot), "--stream", "none", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    from export.bundle import load_bundle, parity_results_path

    assert result == json.loads(parity_results_path(trained_bundle).read_text())  # beside the bundle, not in it
    assert result["bundle_digest"] == load_bundle(trained_bundle).digest
    assert not (trained_bundle / "parity.json").exists()
    variants = result["model_level"]["variants"]
    assert set(variants) == {"keras_float32", "tflite_float32/litert", "tflite_int8/litert", "tflite_int8/tflm",
                             "onnx_float32/onnxruntime", "onnx_int8/onnxruntime"}
    assert result["model_level"]["reference"] == "keras_float32"
    # exactly the run's held-out recordings: 12 of 48 recordings, 10 windows each
    assert result["model_level"]["n_windows"] == 120
    assert "the run's test recordings: 12 of 48 recordings" in result["model_level"]["selection"]
    # Counted in windows (120 of them; one window is 0.0083 of accuracy): every int8 model loses at most
    # one window against float and disagrees with it on at most two, as the CLI's default gate
    # (--max-drop 0.01, --min-agreement 0.98) allows on 120 windows.
    n = result["model_level"]["n_windows"]

    def windows(fraction: float) -> int:
        return round(fraction * n)

    correct_float = windows(variants["keras_float32"]["accuracy"])
    assert correct_float >= 90  # the model learnt the task (at least 3 windows in 4)
    for name in ("tflite_int8/litert", "tflite_int8/tflm", "onnx_int8/onnxruntime"):
        assert correct_float - windows(variants[name]["accuracy"]) <= 1, name
        assert n - windows(variants[name]["vs_reference"]["agreement"]) <= 2, name
    # float formats reproduce Keras
    for name in ("tflite_float32/litert", "onnx_float32/onnxruntime"):
        assert variants[name]["vs_reference"]["max_abs_error"] < 1e-4
        assert variants[name]["vs_reference"]["agreement"] == 1.0
    for name in ("tflite_int8/litert", "tflite_int8/tflm", "onnx_int8/onnxruntime"):
        assert variants[name]["vs_reference"]["max_abs_error"] < 0.2
        assert sum(map(sum, variants[name]["confusion_matrix"])) == 120
    # LiteRT and tflite-micro run the same int8 file: same predictions
    assert (variants["tflite_int8/litert"]["confusion_matrix"] == variants["tflite_int8/tflm"]["confusion_matrix"])
    assert plot.stat().st_size > 10_000
    assert ("gate: PASSED" in proc.stdout) == (proc.returncode == 0)
    # the text names every test recording with its accuracy (not only the JSON)
    lines = proc.stdout.splitlines()
    assert "accuracy per recording (worst first):" in lines
    rows = variants["tflite_int8/litert"]["per_recording"]
    assert len(rows) == 12
    for row in rows:
        (line,) = [ln for ln in lines if ln.split()[:1] == [str(row["recording"])]]
        assert f"{row['accuracy']:.4f}" in line.split()[3:]


def test_parity_accuracy_is_what_the_interpreter_predicts(tiny_bundle, tiny_data):
    bundle = load_bundle(tiny_bundle)
    data = parity.select_data(bundle, tiny_data["unseen"])
    probs = parity.run_variant(bundle, "litert", "int8", data.images)
    from firmware_sim.interpreters import open_interpreter

    with open_interpreter("litert", bundle, dtype="int8") as interp:
        for i in (0, 17, 63):
            np.testing.assert_array_equal(interp.run(data.images[i]), probs[i])
    result = parity.model_level(bundle, data, runtimes=("litert",))
    assert result["variants"]["tflite_int8/litert"]["accuracy"] == pytest.approx(
        float(np.mean(probs.argmax(1) == data.labels)))


def test_gate_fails_with_exit_1_naming_the_variant(trained_bundle, trained_data, monkeypatch, capsys):
    real = parity.run_variant

    def degraded(bundle, runtime, dtype, images, progress=None):
        p = real(bundle, runtime, dtype, images, progress=progress)
        if dtype == "int8" and runtime == "tflm":
            p = p[:, ::-1].copy()  # a broken int8 kernel: every prediction flipped
        return p

    monkeypatch.setattr(parity, "run_variant", degraded)
    code = main(["parity", str(trained_bundle), "--data", str(trained_data), "--stream", "none", "--quiet",
                 "--runtimes", "litert,tflm"])
    out = capsys.readouterr().out
    assert code == 1
    assert "gate: FAILED" in out
    assert "tflite_int8/tflm: accuracy" in out and "tflite_int8/tflm: agrees with keras_float32 on" in out
    assert "tflite_int8/litert" not in out.split("gate: FAILED")[1]


def test_stream_level_float_and_int8_through_firmware_sim(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    timelines = parity.synthetic_timelines(bundle, seeds=(0,), duration_s=8.0, onset_s=4.0)
    result = parity.stream_level(bundle, timelines)
    (stream,) = result["streams"]
    assert set(stream["variants"]) == {"float32", "int8"}
    for m in stream["variants"].values():
        # decisions every 14 frames once a full window exists: (8 s - window) / 0.245 s
        assert m["decisions"] == pytest.approx((8.0 - 10000 / 12800) / (14 * 224 / 12800), abs=2)
        assert m["class_changes"] == 1
    # the device acts on the smoothed state: float and int8 agree on it everywhere and raise the same
    # events; raw per-decision argmax (this 2-epoch model sits near its boundary) differs on at most 2
    assert stream["state_agreement"] == 1.0 and stream["same_events"] is True
    n = stream["variants"]["int8"]["decisions"]
    assert n - round(stream["decision_agreement"] * n) <= 2


def test_recording_timeline_plays_only_test_windows_in_order(tiny_bundle, tiny_data):
    bundle = load_bundle(tiny_bundle)
    data = parity.select_data(bundle, tiny_data["unseen"])
    tl = parity.recording_timeline(bundle, data, windows_each=2)
    assert tl.signal.size == 8 * 2 * 10000
    # every 10000-sample piece is one test window, each played once, a recording's windows in order,
    # and the timeline's truth at each piece is that window's label
    pieces = tl.signal.reshape(-1, 10000)
    played = [int(np.flatnonzero((data.windows.windows == piece).all(axis=1))[0]) for piece in pieces]
    assert len(set(played)) == len(played) == 16
    for g in np.unique(data.groups):
        mine = [i for i in played if data.groups[i] == g]
        assert mine == sorted(mine) and len(mine) == 2
    assert [tl.truth_at(k * 10000) for k in range(16)] == [int(data.labels[i]) for i in played]
    # classes alternate from the first class on, a boundary wherever the class changes
    assert tl.classes[0] == 0 and all(a != b for a, b in zip(tl.classes, tl.classes[1:]))
    assert len(tl.starts) == len(tl.classes) and tl.starts[0] == 0


def test_gate_logic():
    model = {"reference": "keras_float32", "variants": {
        "keras_float32": {"dtype": "float32", "accuracy": 0.95, "vs_reference": {"agreement": 1.0}},
        "tflite_int8/litert": {"dtype": "int8", "accuracy": 0.94, "vs_reference": {"agreement": 0.985}},
        "onnx_int8/onnxruntime": {"dtype": "int8", "accuracy": 0.93, "vs_reference": {"agreement": 0.97}}}}
    failures = parity.gate(model, None, max_drop=0.01, min_agreement=0.98)
    assert failures == [
        "onnx_int8/onnxruntime: accuracy 0.9300 is 0.0200 below keras_float32 (0.9500); allowed drop 0.0100",
        "onnx_int8/onnxruntime: agrees with keras_float32 on 0.9700 of windows; required 0.9800"]
    stream = {"streams": [{"description": "s", "decision_agreement": 0.5, "state_agreement": 0.9}]}
    assert parity.gate(model, stream, max_drop=0.05, min_agreement=0.95)[-1].startswith("stream (s)")


def test_parity_errors(tiny_bundle, tmp_path):
    np.savez(tmp_path / "x.npz", signal=np.random.default_rng(0).normal(size=30000), fs=12800.0, label="healthy")
    np.savez(tmp_path / "y.npz", signal=np.random.default_rng(1).normal(size=30000), fs=12800.0, label="broken")
    bundle = load_bundle(tiny_bundle)
    with pytest.raises(InputError, match=r"data classes \['broken', 'healthy'\] are not the bundle's classes"):
        parity.select_data(bundle, tmp_path)
    proc = run_cli("parity", str(tiny_bundle), "--data", str(tmp_path), "--max-drop", "2")
    assert proc.returncode == 2 and proc.stderr.startswith("edgecnn parity: error: --max-drop 2.0 must be in [0, 1]")
    proc = run_cli("parity", str(tiny_bundle), "--data", str(tmp_path), "--label-map", "healthy=A,broken=B",
                   "--stream", "data", "--quiet", "--no-keras", "--runtimes", "litert", "--min-agreement", "0",
                   "--max-drop", "1")
    assert proc.returncode == 0, proc.stderr  # a gate that cannot fail: the label map and stream ran
    assert "gate: PASSED" in proc.stdout
    assert "6 test recordings back to back" in proc.stdout  # each 30000-sample recording cut in 3 segments
