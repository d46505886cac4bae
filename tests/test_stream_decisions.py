"""What ``edgecnn stream`` decided, on record: --decisions, per-recording results of a folder,
unknown before the first confident decision, input shorter than a window, NaN stretches in a
replayed recording, and SIGINT/SIGTERM ending a stream with its summary."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from edgecnn import synth
from edgecnn.errors import InputError
from tests.util import REPO, run_cli, subprocess_env


def _npz(path, signal_, label="A"):
    np.savez(path, signal=np.asarray(signal_, dtype=np.float32), fs=12800.0, label=label)
    return path


def test_every_decision_on_record_and_what_was_decided(tiny_bundle, tmp_path):
    decisions, out = tmp_path / "d.jsonl", tmp_path / "s.json"
    proc = run_cli("stream", str(tiny_bundle), "--source", "synth:duration=4,seed=1", "--decision-every", "7f",
                   "--decisions", str(decisions), "--json", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    lines = [json.loads(line) for line in decisions.read_text().splitlines()]
    assert len(lines) == data["decisions"] > 0
    first = lines[0]
    assert set(first) >= {"decision", "time_s", "window_start", "window_end", "probabilities", "argmax", "valid",
                          "state"}
    span = 43 * 224 + 256  # the samples the 44 frames of one image cover
    assert first["window_end"] - first["window_start"] == span and first["time_s"] == first["window_end"] / 12800
    assert first["state"] == "unknown"  # no state before k of n decisions agree
    assert all(line["argmax"] == "AB"[int(np.argmax(line["probabilities"]))] for line in lines if line["valid"])
    shares = data["decision_share"]
    counted = {c: sum(line["argmax"] == c for line in lines) / len(lines) for c in shares}
    assert shares == pytest.approx(counted, abs=1e-4)
    assert sum(data["state_seconds"].values()) == pytest.approx(4.0, abs=1e-6)
    assert data["state_seconds"]["unknown"] >= first["time_s"]
    assert data["first_decision_s"] == first["time_s"]
    assert data["policy"]["smooth"] >= 1 and data["policy_from"].endswith("changed by --decision-every")
    assert "decisions per class:" in proc.stdout and "time in state:" in proc.stdout


def test_a_folder_names_its_recordings_and_each_gets_its_own_result(tiny_bundle, tmp_path):
    folder = tmp_path / "recs"
    folder.mkdir()
    _npz(folder / "a_first.npz", synth.render_stream(3.0, seed=5))
    _npz(folder / "b_short.npz", synth.render_stream(0.5, seed=6))  # 6400 samples: less than a window
    _npz(folder / "c_fault.npz", synth.render_stream(3.0, seed=7, faulty=True), label="B")
    events, decisions, out = tmp_path / "e.jsonl", tmp_path / "d.jsonl", tmp_path / "s.json"
    proc = run_cli("stream", str(tiny_bundle), "--source", str(folder), "--decision-every", "7f",
                   "--smooth", "1", "--agree", "1", "--threshold", "0.5", "--min-dwell", "0",
                   "--events", str(events), "--decisions", str(decisions), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    starts = [line for line in proc.stderr.splitlines() if line.startswith("recording ")]
    assert [line.split()[1] for line in starts] == ["a_first", "b_short", "c_fault"]
    data = json.loads(out.read_text())
    recs = {r["recording"]: r for r in data["recordings"]}
    assert list(recs) == ["a_first", "b_short", "c_fault"]
    assert recs["b_short"]["no_decision"] == "no decision: 6400 samples, a window needs 10000"
    assert recs["b_short"]["state"] == "unknown" and recs["b_short"]["decisions"] == 0
    assert "b_short (0.50 s): no decision: 6400 samples, a window needs 10000" in proc.stdout
    # Each recording starts its own stream: its first decision is one window after its start.
    tagged = [json.loads(line) for line in decisions.read_text().splitlines()]
    for name in ("a_first", "c_fault"):
        own = [d for d in tagged if d["recording"] == name]
        assert len(own) == recs[name]["decisions"] > 0
        assert own[0]["window_start"] == round(recs[name]["start_s"] * 12800)
    logged = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["recording"] for e in logged if e["event"] == "recording"] == list(recs)
    state_events = [e for e in logged if e["event"] == "state"]
    assert state_events and all(e["recording"] in recs for e in state_events)


def test_nan_stretches_in_a_replayed_recording_stream_through_and_training_refuses_them(tiny_bundle, tmp_path):
    from edgecnn.dataset import load_windows

    signal_ = synth.render_stream(4.0, seed=2)
    signal_[20000:20500] = np.nan  # a logger dropout
    signal_[30000:30010] = np.inf
    path = _npz(tmp_path / "dropout.npz", signal_)
    out = tmp_path / "s.json"
    proc = run_cli("stream", str(tiny_bundle), "--source", str(path), "--decision-every", "7f", "--quiet",
                   "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["faults"]["nonfinite_samples"] == 510
    # Decisions whose 10000-sample window touches [20000, 30010) are invalid; the others are valid.
    hop, span = 7 * 224, 43 * 224 + 256
    ends = [span + i * hop for i in range(data["decisions"])]
    touched = sum(1 for end in ends if end - span < 30010 and end > 20000)
    assert data["invalid_decisions"] == touched > 0 and data["decisions"] > touched
    with pytest.raises(InputError, match="510 NaN/Inf samples"):
        load_windows(path)


def test_a_resampled_dropout_stays_local(tmp_path):
    from firmware_sim.sources import file_source

    signal_ = synth.render_stream(2.0, seed=3, fs=12000.0)
    signal_[12000:12100] = np.nan
    np.savez(tmp_path / "r.npz", signal=signal_, fs=12000.0)
    replayed = file_source(tmp_path / "r.npz", 12800.0, resample=True).signal
    bad = np.flatnonzero(~np.isfinite(replayed))
    # 100 samples at 12000 Hz are 106.7 at 12800 Hz; the filter's reach adds 32 either side.
    assert 12800 - 32 <= bad[0] <= 12800 and 12907 <= bad[-1] <= 12907 + 33
    assert bad.size == bad[-1] - bad[0] + 1 and bad.size < 200


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_stream_with_summary_json_and_events(tiny_bundle, tmp_path, sig):
    decisions, events, out = tmp_path / "d.jsonl", tmp_path / "e.jsonl", tmp_path / "s.json"
    cmd = [sys.executable, "-m", "edgecnn", "stream", str(tiny_bundle), "--source", "synth:duration=60,seed=1",
           "--decision-every", "7f", "--realtime", "--quiet", "--decisions", str(decisions), "--events", str(events),
           "--json", str(out), "--plot", str(tmp_path / "p.png")]
    proc = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        # Paced at the sensor rate: the first decision comes after one window (0.78 s of stream).
        while time.monotonic() < deadline and proc.poll() is None and not (
                decisions.exists() and decisions.stat().st_size):
            time.sleep(0.05)
        time.sleep(0.3)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert f"interrupted by {sig.name}" in stdout and "real-time factor" in stdout and "Traceback" not in stderr
    data = json.loads(out.read_text())
    assert data["interrupted"] == sig.name and 0 < data["timing"]["stream_s"] < 60
    assert len(decisions.read_text().splitlines()) == data["decisions"] > 0
    assert events.exists() and (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
