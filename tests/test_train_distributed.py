"""tf.distribute paths: two logical CPU devices (mirrored) and two loopback workers (multiworker)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecnn import synth

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def cli(*args, env=None):
    """`python -m edgecnn ...` in a fresh process: devices can only be split before TensorFlow starts."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "edgecnn", *args], cwd=ROOT, env=environ,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("dist")
    return synth.write_pickle(folder / "d.pkl", synth.generate(n=64, seed=5, n_recordings=8))


def test_mirrored_trains_on_two_logical_cpu_devices(data, tmp_path):
    out = tmp_path / "run"
    proc = cli("train", "--data", str(data), "--epochs", "2", "--batch-size", "8", "--strategy", "mirrored",
               "--cpu-devices", "2", "--quiet", "--cache-dir", str(tmp_path / "c"), "--out", str(out))
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-2000:]
    training = json.loads((out / "config.json").read_text())["training"]
    assert training["strategy"] == "mirrored" and training["replicas"] == 2
    assert [d.rsplit(":", 2)[-2:] for d in training["devices"]] == [["CPU", "0"], ["CPU", "1"]]
    assert len(json.loads((out / "history.json").read_text())["loss"]) == 2


def free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_two_loopback_workers_train_one_model(data, tmp_path):
    import keras

    workers = [f"127.0.0.1:{p}" for p in free_ports(2)]
    out = tmp_path / "run"
    procs = []
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        procs.append(cli("train", "--data", str(data), "--epochs", "2", "--batch-size", "8", "--strategy",
                         "multiworker", "--quiet", "--cache-dir", str(tmp_path / f"c{index}"),
                         "--out", str(out), env={"TF_CONFIG": tf_config}))
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (_, stderr) in zip(procs, results):
        assert proc.returncode == 0, stderr[-3000:]
    chief, other = out, out.with_name("run.worker1")
    training = json.loads((chief / "config.json").read_text())["training"]
    assert training["strategy"] == "multiworker" and training["replicas"] == 2
    weights = [keras.saving.load_model(p / "model.keras").get_weights() for p in (chief, other)]
    assert len(weights[0]) == len(weights[1]) > 0
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    # both workers saw the same global batches: identical losses epoch by epoch
    assert json.loads((chief / "history.json").read_text())["loss"] == \
        json.loads((other / "history.json").read_text())["loss"]
