"""The device side on the legacy stack: numpy < 2, tflite-runtime 2.14, no TensorFlow.

``make device-env`` builds ``.venv-device`` (``make test`` does it first); this test streams a
bundle made in the main environment through ``edgecnn stream --runtime tflite-runtime`` there and
compares the decisions with LiteRT's in this environment.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.util import REPO, run_cli, subprocess_env

DEVICE_PYTHON = REPO / ".venv-device" / "bin" / "python"
SOURCE = "synth:duration=8,onset=4,seed=2"

pytestmark = pytest.mark.skipif(
    not DEVICE_PYTHON.exists(),
    reason=".venv-device is absent: build the device-only legacy environment with `make device-env`")


def _device(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(DEVICE_PYTHON), *args], capture_output=True, text=True, timeout=300,
                          env=subprocess_env(), cwd=REPO)


def test_device_env_is_the_legacy_stack_without_tensorflow():
    code = ("import importlib.util as u, json, numpy; print(json.dumps({'numpy': numpy.__version__, "
            "'present': [m for m in ('tensorflow', 'keras', 'tf2onnx', 'tflite_runtime') if u.find_spec(m)]}))")
    proc = _device("-c", code)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert int(found["numpy"].split(".")[0]) < 2
    assert found["present"] == ["tflite_runtime"]


def test_device_env_streams_a_main_env_bundle_like_litert(tiny_bundle, tmp_path):
    device_json, main_json = tmp_path / "device.json", tmp_path / "main.json"
    proc = _device("-m", "edgecnn", "stream", str(tiny_bundle), "--runtime", "tflite-runtime",
                   "--source", SOURCE, "--quiet", "--json", str(device_json), "--events", str(tmp_path / "e.jsonl"))
    assert proc.returncode == 0, proc.stderr
    ref = run_cli("stream", str(tiny_bundle), "--runtime", "litert", "--source", SOURCE, "--quiet",
                  "--json", str(main_json))
    assert ref.returncode == 0, ref.stderr
    device, main = json.loads(device_json.read_text()), json.loads(main_json.read_text())
    assert device["runtime"] == "tflite-runtime" and device["timing"]["realtime_factor"] > 1
    for key in ("samples", "frames", "decisions", "invalid_decisions", "state"):
        assert device[key] == main[key], key
    assert [(e["sample_index"], e["to"]) for e in device["events"]] == \
        [(e["sample_index"], e["to"]) for e in main["events"]]
