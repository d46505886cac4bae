"""``edgecnn stream`` through the real CLI in subprocesses, and the device side's import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
from scipy.io import wavfile

from edgecnn import synth
from tests.util import run_cli, subprocess_env


def test_stream_writes_events_json_and_plot(tiny_bundle, tmp_path):
    events, summary, plot = tmp_path / "ev.jsonl", tmp_path / "out" / "summary.json", tmp_path / "p.png"
    proc = run_cli("stream", str(tiny_bundle), "--source", "synth:duration=4,onset=2,seed=1",
                   "--decision-every", "7f", "--smooth", "1", "--min-dwell", "0", "--on", "0.5", "--off", "0.49",
                   "--events", str(events), "--json", str(summary), "--plot", str(plot), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "real-time factor" in proc.stdout and "deadline misses" in proc.stdout
    data = json.loads(summary.read_text())
    assert data["runtime"] == "litert" and data["model"] == "model_int8.tflite"
    assert data["decisions"] == 1 + (data["frames"] - 44) // 7 and data["samples"] == 51200
    assert data["timing"]["blocks"] == 200 and data["timing"]["realtime_factor"] > 0
    assert data["peak_rss_mb"] > 0
    lines = events.read_text().splitlines()
    assert len(lines) == len(data["events"])
    logged = [json.loads(line) for line in lines]
    assert all(e.pop("bundle_digest") == data["bundle_digest"] for e in logged)  # which model raised it
    assert logged == data["events"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert proc.stderr == ""  # --quiet: no status line


def test_status_line_and_summary_without_quiet(tiny_bundle, tmp_path):
    out = tmp_path / "s.json"
    proc = run_cli("stream", str(tiny_bundle), "--source", "synth:duration=2", "--runtime", "tflm",
                   "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "decisions=" in proc.stderr and "load=" in proc.stderr and "state=" in proc.stderr
    data = json.loads(out.read_text())
    lines = proc.stdout.splitlines()  # the printed summary says what the JSON holds
    assert f"events: {len(data['events'])}" in lines
    assert any(line.startswith(f"decisions: {data['decisions']} (0 invalid)") for line in lines)
    assert any(line.startswith("stream: 2.00 s of signal") for line in lines)


def test_profile_that_does_not_fit_exits_1_with_the_figures(tiny_bundle, tmp_path):
    part = tmp_path / "tiny-part.json"
    part.write_text(json.dumps({"name": "tiny-part", "flash_bytes": 8192, "ram_bytes": 16384, "clock_hz": 48e6}))
    proc = run_cli("stream", str(tiny_bundle), "--source", "synth:duration=2", "--profile", str(part),
                   "--quiet", "--json", str(tmp_path / "fit.json"))
    assert proc.returncode == 1
    assert "tiny-part: does NOT fit: flash 10," in proc.stderr and "of 8,192 bytes; RAM" in proc.stderr
    fit = json.loads((tmp_path / "fit.json").read_text())["fit"]
    assert fit["fits"] is False and fit["ram_needed"] == fit["arena_bytes"] + sum(fit["buffers"].values())
    ok = run_cli("stream", str(tiny_bundle), "--source", "synth:duration=1", "--profile", "cortex-m4", "--quiet")
    assert ok.returncode == 0 and "cortex-m4: fits" in ok.stderr


@pytest.mark.parametrize("args, message", [
    (["--source", "nope.wav"], "source 'nope.wav' is neither 'synth[:spec]', '-' (stdin) nor an existing path"),
    (["--source", "synth:speed=2"], "synthetic source item 'speed=2' must be key=value"),
    (["--decision-every", "soon"], "--decision-every 'soon' must look like 0.25s"),
    (["--profile", "cortex-m99"], "device profile 'cortex-m99' is neither a built-in"),
    (["--on", "0.2", "--off", "0.5"], "thresholds off=0.5 < on=0.2 must lie in [0, 1]"),
])
def test_bad_options_are_one_line_exit_2(tiny_bundle, args, message):
    proc = run_cli("stream", str(tiny_bundle), "--quiet", *args)
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith("edgecnn stream: error: ") and message in line


def test_a_tampered_bundle_is_refused(tiny_bundle, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    with open(copy / "model_int8.tflite", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    proc = run_cli("stream", str(copy), "--source", "synth:duration=1", "--quiet")
    assert proc.returncode == 2 and "model_int8.tflite" in proc.stderr and "Traceback" not in proc.stderr


def test_wav_at_another_rate_needs_resample(tiny_bundle, tmp_path):
    wav = tmp_path / "machine.wav"
    signal = synth.render_stream(1.5, seed=3, fs=12000.0)
    wavfile.write(wav, 12000, signal)
    refused = run_cli("stream", str(tiny_bundle), "--source", str(wav), "--quiet")
    assert refused.returncode == 2
    assert "12000 Hz but the bundle needs 12800 Hz; pass --resample" in refused.stderr
    out = tmp_path / "s.json"
    proc = run_cli("stream", str(tiny_bundle), "--source", str(wav), "--resample", "--quiet", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["samples"] == 18000 * 16 // 15


def test_wav_at_the_bundle_rate_replays_exactly(tiny_bundle, tmp_path):
    from export.bundle import load_bundle
    from firmware_sim.sources import file_source

    wav = tmp_path / "machine.wav"
    signal = synth.render_stream(1.0, seed=4)
    wavfile.write(wav, 12800, signal)
    source = file_source(wav, load_bundle(tiny_bundle).cfg.fs, block=300)
    blocks = list(source.blocks())
    np.testing.assert_array_equal(np.concatenate([b.samples for b in blocks]), signal)
    assert [b.seq for b in blocks] == list(range(len(blocks)))


def test_raw_int16_on_stdin(tiny_bundle, tmp_path):
    signal = synth.render_stream(1.5, seed=2)
    counts = np.clip(np.round(signal / 10.0 * 32767), -32768, 32767).astype("<i2")
    out = tmp_path / "s.json"
    proc = run_cli("stream", str(tiny_bundle), "--source", "-", "--scale", str(10.0 / 32767), "--quiet",
                   "--json", str(out), input=counts.tobytes())
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["samples"] == signal.size
    # frames and decisions follow from the stream's length: the first at the first full image (44 frames),
    # then one per decision_every_frames (14 by default)
    assert data["frames"] == 1 + (signal.size - 256) // 224
    assert data["decisions"] == 1 + (data["frames"] - 44) // data["decision_every_frames"]


def test_realtime_paces_at_the_sensor_rate(tiny_bundle):
    start = time.perf_counter()
    proc = run_cli("stream", str(tiny_bundle), "--source", "synth:duration=1.5", "--realtime", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert time.perf_counter() - start >= 1.5


def test_device_side_imports_no_tensorflow(tiny_bundle, tmp_path):
    """Import firmware_sim, run a stream through every runtime and the CLI; check sys.modules."""
    code = f"""
import json, sys
import firmware_sim
from firmware_sim import decisions, interpreters, profiles, report, runtime, sources, \\
    streaming_stft, timing
from export.bundle import load_bundle
from edgecnn.cli import main
bundle = load_bundle({str(tiny_bundle)!r})
counts = {{}}
for name in ("litert", "tflm", "onnxruntime"):
    with interpreters.open_interpreter(name, bundle) as interp:
        rt = runtime.StreamRuntime(bundle.cfg, bundle.classes, interp)
        counts[name] = rt.run(sources.SynthSource("synth:duration=1.5", bundle.cfg.fs).blocks())["decisions"]
code = main(["stream", {str(tiny_bundle)!r}, "--source", "synth:duration=1.5", "--quiet"])
from scipy.io import wavfile  # file replay goes through the data layer and the resampler too
import numpy as np
wavfile.write({str(tmp_path / "replay.wav")!r}, 12000, np.zeros(15000, dtype=np.float32))
code += main(["stream", {str(tiny_bundle)!r}, "--source", {str(tmp_path / "replay.wav")!r},
              "--resample", "--quiet"])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx", "tf_keras"))
print(json.dumps({{"code": code, "counts": counts, "heavy": heavy}}))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["code"] == 0 and all(n > 0 for n in result["counts"].values())
    assert result["heavy"] == []


def test_cmsis_dsp_backend_runs_the_stream(tiny_bundle, tmp_path):
    pytest.importorskip("cmsisdsp", reason="the CMSIS-DSP backends need the cmsisdsp package")
    out = {}
    for dsp in ("numpy", "cmsis-f32"):
        path = tmp_path / f"{dsp}.json"
        proc = run_cli("stream", str(tiny_bundle), "--source", "synth:duration=3,seed=4", "--dsp", dsp,
                       "--quiet", "--json", str(path))
        assert proc.returncode == 0, proc.stderr
        out[dsp] = json.loads(path.read_text())
    assert out["cmsis-f32"]["dsp"] == "cmsis-f32"
    assert out["cmsis-f32"]["decisions"] == out["numpy"]["decisions"] > 0
    assert out["cmsis-f32"]["state"] == out["numpy"]["state"]


def test_replay_of_real_cwru_recording_needs_resample(tiny_bundle, tmp_path):
    from tests.util import SHARED_DATA

    recording = SHARED_DATA / "cwru" / "IR007_0hp_105.npz"
    if not recording.exists():
        pytest.skip(f"real data absent: {recording} (the sibling shared/data folder)")
    refused = run_cli("stream", str(tiny_bundle), "--source", str(recording), "--quiet")
    assert refused.returncode == 2 and "at 12000 Hz but the bundle needs 12800 Hz" in refused.stderr
    out = tmp_path / "s.json"
    proc = run_cli("stream", str(tiny_bundle), "--source", str(recording), "--resample", "--quiet",
                   "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    with np.load(recording) as data:
        n_in = np.asarray(data["signal"]).size
    assert json.loads(out.read_text())["samples"] == -(-n_in * 16 // 15)
