import pickle
import subprocess
import sys

import numpy as np
import pytest
from scipy.signal import butter, hilbert, sosfiltfilt

from edgecnn import synth
from edgecnn.errors import ConfigError
from tests.util import SHARED_DATA, run_cli

SHARED = SHARED_DATA.parent


def test_deterministic_for_a_seed_and_reference_layout():
    a = synth.generate(n=40, seed=7)
    b = synth.generate(n=40, seed=7)
    c = synth.generate(n=40, seed=8)
    assert np.array_equal(a["signal"], b["signal"]) and not np.array_equal(a["signal"], c["signal"])
    assert a["signal"].shape == (40, 10000) and a["signal"].dtype == np.float32
    assert a["time"].shape == (40, 10000)
    np.testing.assert_allclose(a["time"][3, :3], [0, 1 / 12800, 2 / 12800], rtol=1e-6)
    assert a["label"].shape == (40, 2) and np.all(a["label"].sum(axis=1) == 1)
    assert set(np.unique(a["recording"])) == set(range(4))
    # each recording has one class; both classes present, balanced over recordings
    for rid in range(4):
        rows = a["label"][a["recording"] == rid]
        assert len(np.unique(rows.argmax(1))) == 1
    assert a["label"].sum(axis=0).tolist() == [20.0, 20.0]


def _envelope_peak_hz(x, fs, band):
    sos = butter(4, band, btype="bandpass", fs=fs, output="sos")
    env = np.abs(hilbert(sosfiltfilt(sos, x)))
    spec = np.abs(np.fft.rfft(env - env.mean()))
    freqs = np.fft.rfftfreq(env.size, 1 / fs)
    keep = (freqs > 5) & (freqs < 400)
    return freqs[keep][np.argmax(spec[keep])]


def test_faulty_windows_carry_the_defect_frequency_in_their_envelope():
    data = synth.generate(n=60, seed=3, n_recordings=6)
    m = data["machines"]
    faulty = np.flatnonzero(m["faulty"])
    rid = faulty[np.argmax(m["severity"][faulty])]
    window = data["signal"][data["recording"] == rid][0].astype(np.float64)
    f_res = m["resonance_hz"][rid]
    peak = _envelope_peak_hz(window, 12800, (f_res - 400, min(f_res + 400, 6300)))
    defect = m["defect_order"][rid] * m["shaft_hz"][rid]
    assert abs(peak - defect) < 0.05 * defect + 2.0


def test_difficulty_reaches_severity_into_the_noise():
    easy = synth.generate(n=400, seed=0, n_recordings=200, difficulty=0.3)["machines"]
    hard = synth.generate(n=400, seed=0, n_recordings=200, difficulty=2.0)["machines"]
    assert np.median(hard["severity"][hard["faulty"]]) < 0.5 * np.median(easy["severity"][easy["faulty"]])
    assert np.all(easy["severity"][~easy["faulty"]] == 0)


def test_stream_develops_fault_at_onset():
    x = synth.render_stream(20.0, seed=2, fault_onset_s=10.0, severity=3.0)
    assert x.shape == (256000,) and x.dtype == np.float32
    from scipy.stats import kurtosis
    before, after = kurtosis(x[:10 * 12800]), kurtosis(x[10 * 12800 + 2000:])
    assert after > before + 1.0


def test_stream_segments_are_one_signal_whatever_the_cut():
    stream = synth.MachineStream(5.0, seed=4, fault_onset_s=2.0, severity=2.0)
    half = list(stream.segments(0.5))
    assert [p.size for p in half] == [6400] * 10 and all(p.dtype == np.float32 for p in half)
    joined = np.concatenate(half)
    np.testing.assert_array_equal(joined, np.concatenate(list(stream.segments(2.0))))
    np.testing.assert_array_equal(joined, np.concatenate(list(stream.segments(0.0137))))
    np.testing.assert_array_equal(joined, synth.render_stream(5.0, seed=4, fault_onset_s=2.0, severity=2.0))


def test_stream_carries_the_ring_tail_across_render_steps(monkeypatch):
    kw = dict(seed=6, faulty=True, severity=3.0)
    monkeypatch.setattr(synth.MachineStream, "CHUNK", 5 * 12800)  # the whole 3 s in one FFT
    one_piece = np.concatenate(list(synth.MachineStream(3.0, **kw).segments(1.0)))
    monkeypatch.setattr(synth.MachineStream, "CHUNK", 700)  # steps shorter than the ring itself
    stepped = np.concatenate(list(synth.MachineStream(3.0, **kw).segments(1.0)))
    assert one_piece.size == stepped.size == 38400
    np.testing.assert_allclose(stepped, one_piece, rtol=0, atol=1e-5 * np.abs(one_piece).max())


def test_stream_harmonic_phase_is_continuous_across_segment_borders():
    stream = synth.MachineStream(4.0, seed=8)  # healthy: harmonics + noise + resonance
    x = np.concatenate(list(stream.segments(0.7))).astype(np.float64)
    fs, f = stream.fs, stream.shaft_hz
    border = synth.MachineStream.CHUNK  # an internal step border, and 0.7 s segment borders around it
    for start in (border - 12800, border, 2 * 12800 + 999):
        n = np.arange(start, start + 12800)
        # Lock-in at the shaft speed over one second at absolute time: the 1x sine's phase.
        z = np.sum(x[n] * np.exp(-2j * np.pi * f * n / fs))
        phase = np.angle(z) + np.pi / 2  # sin(w t + p) projects onto exp(j (p - pi/2))
        assert abs(np.angle(np.exp(1j * (phase - stream.phases[0])))) < 0.15


def test_stream_fault_gate_switches_on_at_the_onset_sample():
    onset = synth.MachineStream(3.0, seed=9, fault_onset_s=1.3, severity=3.0)
    healthy = synth.MachineStream(3.0, seed=9)
    faulty = synth.MachineStream(3.0, seed=9, faulty=True, severity=3.0)
    assert onset.onset_sample == 16640
    x, h, f = (np.concatenate(list(s.segments(0.25))) for s in (onset, healthy, faulty))
    tol = 1e-5 * np.abs(h).max()
    np.testing.assert_allclose(x[:16640], h[:16640], rtol=0, atol=tol)  # same machine, no impacts yet
    first = 16640 + np.flatnonzero(np.abs(x[16640:] - h[16640:]) > 0.01)[0]
    assert first <= 16640 + onset.period + 2  # the first impact after the onset rings
    tail = 16640 + synth.RING_SAMPLES  # the faulty-throughout machine's earlier rings have decayed out
    np.testing.assert_allclose(x[tail:], f[tail:], rtol=0, atol=tol)
    assert np.abs(x[:16640] - f[:16640]).max() > 0.5


def test_spec_validation():
    with pytest.raises(ConfigError, match=r"synth: n=1 must be an integer >= 2 windows"):
        synth.SynthSpec(n=1)
    with pytest.raises(ConfigError, match=r"synth: n_recordings=50 must be in \[2, n=10\]"):
        synth.SynthSpec(n=10, n_recordings=50)
    with pytest.raises(ConfigError, match=r"synth: difficulty=0 must be in \(0, 10\]"):
        synth.SynthSpec(difficulty=0)
    with pytest.raises(ConfigError, match=r"synth stream: duration_s=0 must be > 0"):
        synth.render_stream(0)


def test_cli_synth_writes_what_the_reference_notebook_reads(tmp_path):
    out = tmp_path / "data.pkl"
    proc = run_cli("synth", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "2000 windows" in proc.stdout
    # exactly the reference notebook's reading code: plain pickle.load and its three keys
    with open(out, "rb") as fh:
        d = pickle.load(fh)
    assert np.asarray(d["signal"]).shape == (2000, 10000)
    assert np.asarray(d["time"]).shape == (2000, 10000)
    label = np.asarray(d["label"])
    assert label.shape == (2000, 2) and set(np.unique(label)) == {0.0, 1.0}
    assert np.all(label.sum(axis=1) == 1)


@pytest.mark.slow
def test_reference_notebook_script_runs_on_synth_pickle(tmp_path):
    script = SHARED / "reference" / "stft_cnn_lab.py"
    if not script.exists():
        pytest.skip(f"reference notebook script not found at {script}")
    pkl = synth.write_pickle(tmp_path / "small.pkl", synth.generate(n=60, seed=1))
    proc = subprocess.run([sys.executable, str(script), str(pkl), "--epochs", "1"], capture_output=True,
                          text=True, timeout=600, cwd=script.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["n_train"] == 42 and result["n_test"] == 18


def test_recordings_belong_to_machines_with_one_healthy_and_one_faulty_recording_each():
    data = synth.generate(n=160, seed=4, n_recordings=16)
    machine, recording = data["machine"], data["recording"]
    assert machine.shape == (160,) and machine.dtype == np.int64 and set(machine.tolist()) == set(range(8))
    m = data["machines"]
    for rid in range(16):
        assert np.unique(machine[recording == rid]).size == 1
        assert m["machine"][rid] == machine[recording == rid][0]
    for mid in range(8):
        recs = np.flatnonzero(m["machine"] == mid)
        assert sorted(m["faulty"][recs].tolist()) == [False, True]
        # the machine's own physics is shared by its recordings; the shaft speed varies within its range
        for key in ("resonance_hz", "resonance2_hz", "gain", "noise", "defect_order"):
            assert np.unique(m[key][recs]).size == 1
        assert np.array_equal(m["path"][recs[0]], m["path"][recs[1]])
    assert np.unique(m["resonance_hz"]).size == 8 and np.unique(m["path"][:, 1]).size == 8


def _healthy_spectra_db(data):
    """Mean log power spectrum (200 Hz bands, 500-6000 Hz) of each healthy recording."""
    f = np.fft.rfftfreq(10000, 1 / 12800)
    power = np.abs(np.fft.rfft(data["signal"].astype(np.float64), axis=1)) ** 2
    edges = np.arange(500, 6001, 200)
    bands = np.stack([power[:, (f >= lo) & (f < lo + 200)].mean(axis=1) for lo in edges[:-1]], axis=1)
    out = {}
    for rid in np.unique(data["recording"]):
        if not data["machines"]["faulty"][rid]:
            out[int(rid)] = 10 * np.log10(bands[data["recording"] == rid].mean(axis=0))
    return out


def test_machines_differ_more_than_recordings_of_one_machine():
    # four recordings per machine (two healthy): the spectral shape is the machine's, not the recording's
    data = synth.generate(n=240, seed=6, n_recordings=24, n_machines=6)
    spectra = _healthy_spectra_db(data)
    machine = data["machines"]["machine"]
    shape = {r: s - s.mean() for r, s in spectra.items()}  # gain removed: the shape alone
    same, other = [], []
    ids = sorted(shape)
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            (same if machine[a] == machine[b] else other).append(np.mean(np.abs(shape[a] - shape[b])))
    assert len(same) == 6 and np.median(other) > 3 * np.max(same)  # dB against dB


def test_the_pickle_carries_machines_and_training_splits_by_machine(tmp_path):
    from edgecnn.dataset import load_windows, split_by_recording
    from edgecnn.train import default_config, default_split_key, validation_split

    path = synth.write_pickle(tmp_path / "d.pkl", synth.generate(n=240, seed=1, n_recordings=24))
    ws = load_windows(path, default_config("edge"))
    assert default_split_key(ws) == "machine"
    assert {r["machine"] for r in ws.recordings} == set(range(12))
    train, test = split_by_recording(ws, test_fraction=0.25, seed=0, by="machine")
    machines = lambda idx: {ws.recordings[g]["machine"] for g in np.unique(ws.groups[idx])}  # noqa: E731
    assert len(machines(test)) == 3 and not machines(train) & machines(test)
    assert set(ws.labels[test].tolist()) == {0, 1}
    fit, val, rule = validation_split(ws, train, val_fraction=0.2, seed=0)
    assert rule == "by machine" and len(machines(val)) == 2 and not machines(fit) & machines(val)
