"""`edgecnn predict`: one recording's per-window classes and probabilities from a bundle's int8 model."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from edgecnn import dsp, parity, synth
from edgecnn.dataset import cut_windows
from export.bundle import load_bundle
from tests.util import run_cli, subprocess_env


def test_predict_runs_the_int8_model_window_by_window_without_tensorflow(tiny_bundle, tmp_path):
    bundle = load_bundle(tiny_bundle)
    signal = synth.render_stream(3.5, seed=11, faulty=True)  # 44 800 samples at the bundle's 12.8 kHz
    rec = tmp_path / "pump7.npz"
    np.savez(rec, signal=signal, fs=synth.FS, label="faulty")
    out = tmp_path / "pred.json"
    code = ("import sys; from edgecnn.cli import main; "
            f"code = main(['predict', {str(tiny_bundle)!r}, {str(rec)!r}, '--json', {str(out)!r}]); "
            "print([m for m in ('tensorflow', 'keras') if m in sys.modules], code)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[] 0"  # no TensorFlow on the device side
    doc = json.loads(out.read_text())
    (result,) = doc["recordings"]
    windows = cut_windows(signal, bundle.cfg.window_samples, bundle.cfg.window_samples)
    assert result["windows"] == len(windows) == 4 and result["label"] == "faulty"
    # the same numbers parity's int8 path gives for these windows
    expected = parity.run_variant(bundle, "litert", "int8", dsp.features(windows, bundle.cfg))
    got = np.array([[w["probabilities"][c] for c in bundle.classes] for w in result["per_window"]])
    assert np.abs(got - expected).max() < 1e-5
    assert [w["class"] for w in result["per_window"]] == [bundle.classes[i] for i in expected.argmax(axis=1)]
    counts = np.bincount(expected.argmax(axis=1), minlength=len(bundle.classes)) / 4
    assert result["share"] == dict(zip(bundle.classes, counts.tolist()))
    assert [w["start_s"] for w in result["per_window"]] == [i * 10000 / 12800 for i in range(4)]
    summary = [line for line in proc.stdout.splitlines() if line.startswith("pump7 (labelled faulty): 4 windows:")]
    assert len(summary) == 1 and "mostly" in summary[0]


def test_predict_refuses_a_recording_shorter_than_a_window(tiny_bundle, tmp_path):
    rec = tmp_path / "short.npz"
    np.savez(rec, signal=np.zeros(5000, np.float32), fs=12800.0)
    proc = run_cli("predict", str(tiny_bundle), str(rec))
    assert proc.returncode == 2 and "shorter than one window" in proc.stderr and "Traceback" not in proc.stderr
