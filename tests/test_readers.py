import json
import os
import pickle

import numpy as np
import pytest
from scipy.io import savemat, wavfile

from edgecnn import synth
from edgecnn.errors import InputError
from edgecnn.readers import ReadOptions, read_recordings
from tests.util import SHARED_DATA

DATA = SHARED_DATA


class _Evil:
    """Pickles into a call of os.system that would create a file when loaded."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"signal": np.zeros((2, 10)), "label": _Evil(marker)}))
    with pytest.raises(InputError, match=r"evil.pkl: unsafe or corrupt pickle \(refused to load posix.system"):
        read_recordings(path)
    assert not marker.exists()


def test_reference_pickle_with_and_without_recording_ids(tmp_path):
    data = synth.generate(n=12, seed=0, n_recordings=4)
    path = synth.write_pickle(tmp_path / "d.pkl", data)
    recs = read_recordings(path)
    assert len(recs) == 4 and all(r.signal.shape == (3, 10000) for r in recs)
    assert {r.label for r in recs} == {"A", "B"} and recs[0].fs == 12800.0
    # the notebook's own minimal dict: time, signal, label only -> one recording per row, fs from time
    plain = {"time": data["time"][:5] * (12800 / 12000), "signal": data["signal"][:5], "label": data["label"][:5]}
    (tmp_path / "plain.pkl").write_bytes(pickle.dumps(plain))
    recs = read_recordings(tmp_path / "plain.pkl")
    assert len(recs) == 5 and recs[0].fs == pytest.approx(12000.0)
    np.testing.assert_array_equal(recs[2].signal[0], data["signal"][2])


def test_npz_wav_csv_mat_readers(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=24000).astype(np.float32)
    np.savez(tmp_path / "rec.npz", signal=x, fs=12000.0, label="inner_race", load_hp=1)
    (rec,) = read_recordings(tmp_path / "rec.npz")
    assert rec.label == "inner_race" and rec.fs == 12000.0 and rec.meta["load_hp"] == 1
    np.testing.assert_array_equal(rec.signal, x)

    pcm = (x / np.abs(x).max() * 20000).astype(np.int16)
    wavfile.write(tmp_path / "motor.wav", 12800, pcm)
    (rec,) = read_recordings(tmp_path / "motor.wav")
    assert rec.fs == 12800 and rec.label == "motor"
    np.testing.assert_allclose(rec.signal, pcm / 32768.0, rtol=1e-6)
    stereo = np.stack([pcm, -pcm], axis=1)
    wavfile.write(tmp_path / "st.wav", 12800, stereo)
    with pytest.raises(InputError, match=r"st.wav: WAV has 2 channels; choose one with --channel N \(0 to 1\)"):
        read_recordings(tmp_path / "st.wav")  # never silently the first
    (rec,) = read_recordings(tmp_path / "st.wav", options=ReadOptions(channel=1))
    assert rec.meta["channels"] == 2 and rec.meta["channel"] == 1
    np.testing.assert_allclose(rec.signal, -pcm / 32768.0, rtol=1e-6)
    with pytest.raises(InputError, match=r"st.wav: --channel 2 but the WAV has 2 channel\(s\) \(0 to 1\)"):
        read_recordings(tmp_path / "st.wav", options=ReadOptions(channel=2))

    np.savetxt(tmp_path / "one.csv", x[:3000], header="fs=12000", comments="# ")
    (rec,) = read_recordings(tmp_path / "one.csv")
    assert rec.fs == 12000.0 and rec.signal.size == 3000
    t = np.arange(3000) / 25600.0
    np.savetxt(tmp_path / "two.csv", np.stack([t, x[:3000]], axis=1), delimiter=",", header="time,signal",
               comments="")
    (rec,) = read_recordings(tmp_path / "two.csv")
    assert rec.fs == pytest.approx(25600.0) and rec.signal.size == 3000

    savemat(tmp_path / "12k_Drive_End_IR007_0_105.mat",
            {"X105_DE_time": x[:, None].astype(np.float64), "X105_FE_time": np.zeros((10, 1)),
             "X105RPM": np.array([[1797.0]]), "X999_DE_time": np.ones((5, 1))})
    (rec,) = read_recordings(tmp_path / "12k_Drive_End_IR007_0_105.mat")
    assert rec.label == "inner_race" and rec.fs == 12000.0 and rec.meta["mat_variable"] == "X105_DE_time"
    assert rec.meta["rpm"] == 1797.0
    np.testing.assert_allclose(rec.signal, x)
    savemat(tmp_path / "normal_0_97.mat", {"X097_DE_time": x[:, None]})
    (rec,) = read_recordings(tmp_path / "normal_0_97.mat")
    assert rec.label == "normal" and rec.fs == 48000.0
    savemat(tmp_path / "OuterRaceFault_1.mat", {"bearing": {"gs": x[:, None], "sr": 48828.0, "rate": 25}})
    (rec,) = read_recordings(tmp_path / "OuterRaceFault_1.mat")
    assert rec.label == "outer_race" and rec.fs == 48828.0


def test_folder_labels_come_from_subfolders(tmp_path):
    for label in ("healthy", "faulty"):
        (tmp_path / label).mkdir()
        for i in range(2):
            wavfile.write(tmp_path / label / f"m{i}.wav", 12800, np.zeros(20000, dtype=np.int16) + i)
    recs = read_recordings(tmp_path)
    assert sorted(r.label for r in recs) == ["faulty", "faulty", "healthy", "healthy"]


@pytest.mark.parametrize("name,content,match", [
    ("empty.npz", b"", r"empty.npz: file is empty"),
    ("trunc.npz", b"PK\x03\x04garbage", r"trunc.npz: not a readable npz recording"),
    ("bad.wav", b"RIFF\x00\x00", r"bad.wav: not a readable WAV file"),
    ("bad.pkl", b"\x80\x04\x95", r"bad.pkl: unsafe or corrupt pickle \(pickle data was truncated\)"),
    ("junk.pkl", b"\x80\x04K\x01.", r"junk.pkl: pickle holds a int; expected a dict"),
    ("bad.mat", b"MATLAB 5.0 nonsense" * 10, r"bad.mat: not a readable MATLAB file"),
    ("bad.csv", b"1.0\nabc\n", r"bad.csv:2: not a number in 'abc'"),
    ("x.flac", b"fLaC", r"x.flac: unsupported file type '.flac'"),
])
def test_corrupt_files_raise_input_error(tmp_path, name, content, match):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError, match=match):
        read_recordings(tmp_path / name)


def test_bad_values_raise_input_error(tmp_path):
    np.savez(tmp_path / "nan.npz", signal=np.array([1.0, np.nan, 2.0]), fs=100.0)
    with pytest.raises(InputError, match=r"nan.npz: signal has 1 NaN/Inf samples"):
        read_recordings(tmp_path / "nan.npz")
    np.savez(tmp_path / "cplx.npz", signal=np.ones(5, dtype=complex), fs=100.0)
    with pytest.raises(InputError, match=r"cplx.npz: signal has dtype complex128; need real numbers"):
        read_recordings(tmp_path / "cplx.npz")
    np.savez(tmp_path / "huge.npz", signal=np.array([1.0, 1e300]), fs=100.0)
    with pytest.raises(InputError, match=r"huge.npz: signal has values beyond float32's range \(max \|x\| 1e\+300\)"):
        read_recordings(tmp_path / "huge.npz")
    np.savez(tmp_path / "nofs.npz", signal=np.ones(5))
    with pytest.raises(InputError, match=r"nofs.npz: npz has no 'fs'"):
        read_recordings(tmp_path / "nofs.npz")
    (tmp_path / "mismatch.pkl").write_bytes(pickle.dumps({"signal": np.zeros((3, 10)), "label": np.eye(2)}))
    with pytest.raises(InputError, match=r"3 signal rows but 2 label rows"):
        read_recordings(tmp_path / "mismatch.pkl")
    with pytest.raises(InputError, match=r"no such file or folder"):
        read_recordings(tmp_path / "missing.npz")


@pytest.mark.skipif(not (DATA / "cwru").is_dir(), reason=f"real recordings not found at {DATA}/cwru")
def test_real_cwru_and_mfpt_folders():
    cwru = read_recordings(DATA / "cwru")
    assert len(cwru) == 13 and {r.label for r in cwru} == {"normal", "ball", "inner_race", "outer_race"}
    assert all(r.fs == 12000.0 for r in cwru)
    mfpt = read_recordings(DATA / "mfpt")
    assert len(mfpt) == 10 and all(r.fs == 48828.0 for r in mfpt)
    assert {r.meta["load_lb"] for r in mfpt} >= {0.0, 200.0}


def _write_pcm(path, frames: np.ndarray, width: int, fs: int = 12800) -> None:
    """Integer PCM WAV through the standard library (scipy.io.wavfile cannot write 24-bit)."""
    import wave

    frames = np.asarray(frames, dtype=np.int64).reshape(len(frames), -1)
    if width == 1:
        raw = (frames + 128).astype(np.uint8).tobytes()
    else:
        raw = (frames[..., None] >> (8 * np.arange(width))).astype(np.uint8).tobytes()
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(frames.shape[1])
        wav.setsampwidth(width)
        wav.setframerate(fs)
        wav.writeframes(raw)


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_pcm_wav_of_every_width_reads_as_scipy_scales_it(tmp_path, width):
    rng = np.random.default_rng(width)
    full = 1 << (8 * width - 1)
    frames = rng.integers(-full, full, size=(3000, 3))
    frames[:4, 0] = [-full, full - 1, 0, 1]
    _write_pcm(tmp_path / "w.wav", frames, width, fs=25600)
    (rec,) = read_recordings(tmp_path / "w.wav", options=ReadOptions(channel=0))
    assert rec.fs == 25600 and rec.meta["channels"] == 3 and rec.signal.dtype == np.float32
    np.testing.assert_array_equal(rec.signal, (frames[:, 0] / full).astype(np.float32))
    assert rec.signal[0] == -1.0 and rec.signal[2] == 0.0
    # scipy.io.wavfile reads the same file to the same samples (24-bit left-justified in int32)
    fs, ref = wavfile.read(tmp_path / "w.wav")
    assert fs == 25600
    ref = ref[:, 0]
    if width == 1:
        ref = (ref.astype(np.float64) - 128) / 128
    else:
        ref = ref / -float(np.iinfo(ref.dtype).min)
    np.testing.assert_array_equal(rec.signal, ref.astype(np.float32))


def test_float_wav_still_reads_through_scipy(tmp_path):
    x = np.random.default_rng(1).normal(size=4000).astype(np.float32)
    wavfile.write(tmp_path / "f.wav", 12800, np.stack([x, -x], axis=1))
    with pytest.raises(InputError, match=r"f.wav: WAV has 2 channels; choose one with --channel N"):
        read_recordings(tmp_path / "f.wav")
    (rec,) = read_recordings(tmp_path / "f.wav", options=ReadOptions(channel=1))
    assert rec.meta["channels"] == 2
    np.testing.assert_array_equal(rec.signal, -x)
    data = (tmp_path / "f.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match=r"cut.wav: WAV file is truncated"):
        read_recordings(tmp_path / "cut.wav")


def test_truncated_pcm_wav_says_so(tmp_path):
    _write_pcm(tmp_path / "w.wav", np.arange(-500, 500), 2)
    data = (tmp_path / "w.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[:len(data) - 301])
    with pytest.raises(InputError, match=r"cut.wav: WAV file is truncated \(the header declares 1000 frames, "
                                         r"the file holds 849\)"):
        read_recordings(tmp_path / "cut.wav")


def test_reading_pickle_npz_csv_and_pcm_wav_never_imports_scipy(tmp_path):
    import subprocess
    import sys

    from tests.util import subprocess_env

    x = np.random.default_rng(2).normal(size=3000)
    _write_pcm(tmp_path / "a.wav", (x * 1000).astype(np.int64), 2)
    np.savez(tmp_path / "b.npz", signal=x, fs=12800.0)
    np.savetxt(tmp_path / "c.csv", x, header="fs=12800")
    synth.write_pickle(tmp_path / "d.pkl", synth.generate(n=4, seed=0))
    code = ("import sys; from edgecnn.readers import read_recordings; "
            f"recs = read_recordings({str(tmp_path)!r}); "
            "print(len(recs), sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["7", "[]"]  # a.wav, b.npz, c.csv and the pickle's 4 recordings


def test_one_column_csv_needs_its_rate(tmp_path):
    x = np.random.default_rng(2).normal(size=3000)
    np.savetxt(tmp_path / "bare.csv", x)
    with pytest.raises(InputError, match=r"bare.csv: one column and no '# fs=...' line, so the sample rate is "
                                         r"unknown; add the line \(e.g. '# fs=12800'\) or pass --fs HZ"):
        read_recordings(tmp_path / "bare.csv")
    (rec,) = read_recordings(tmp_path / "bare.csv", options=ReadOptions(fs=25600.0))
    assert rec.fs == 25600.0
    np.testing.assert_array_equal(rec.signal, x.astype(np.float32))
    # a file's own line wins over --fs (it applies to files that do not say)
    (tmp_path / "own.csv").write_text("# fs=12000\n" + (tmp_path / "bare.csv").read_text())
    assert read_recordings(tmp_path / "own.csv", options=ReadOptions(fs=25600.0))[0].fs == 12000.0
    with pytest.raises(InputError, match=r"--fs -5.0 must be a sample rate in Hz"):
        ReadOptions(fs=-5.0)


def test_csv_through_numpy_keeps_every_layout_and_names_the_bad_line(tmp_path):
    x = np.round(np.random.default_rng(3).normal(size=600), 6).tolist()
    t = (np.arange(600) / 12800.0).tolist()
    layouts = {
        "semicolon.csv": "time;signal\n" + "\n".join(f"{a!r};{b!r}" for a, b in zip(t, x)),
        "spaces.txt": "# recorded on pump 3\n# fs: 12800\n\n" + "\n".join(f"  {b!r}" for b in x),
        "comma_space.csv": "t, x\n" + "\n".join(f"{a!r}, {b!r}" for a, b in zip(t, x)),
    }
    for name, text in layouts.items():
        (tmp_path / name).write_text(text + "\n")
        (rec,) = read_recordings(tmp_path / name)
        assert rec.fs == pytest.approx(12800.0), name
        np.testing.assert_array_equal(rec.signal, np.float32(x), err_msg=name)
    (tmp_path / "ragged.csv").write_text("# fs=100\n1\n2\n3,4\n")
    with pytest.raises(InputError, match=r"ragged.csv: need 1 column \(signal\) or 2 \(time, signal\) in every "
                                         r"row \(line 4 has 2\)"):
        read_recordings(tmp_path / "ragged.csv")
    (tmp_path / "late.csv").write_text("# fs=100\n1\n2\n3\nfour\n")
    with pytest.raises(InputError, match=r"late.csv:5: not a number in 'four'"):
        read_recordings(tmp_path / "late.csv")


def test_stereo_wav_and_rateless_csv_through_the_cli(tiny_bundle, tmp_path):
    from tests.util import run_cli

    signal = synth.render_stream(1.0, seed=4)
    pcm = (signal / np.abs(signal).max() * 20000).astype(np.int16)
    wavfile.write(tmp_path / "stereo.wav", 12800, np.stack([pcm, np.zeros_like(pcm)], axis=1))
    refused = run_cli("stream", str(tiny_bundle), "--source", str(tmp_path / "stereo.wav"), "--quiet")
    assert refused.returncode == 2 and refused.stderr.splitlines() == [
        f"edgecnn stream: error: {tmp_path / 'stereo.wav'}: WAV has 2 channels; choose one with --channel N "
        f"(0 to 1)"]
    ok = run_cli("stream", str(tiny_bundle), "--source", str(tmp_path / "stereo.wav"), "--channel", "0",
                 "--quiet", "--json", str(tmp_path / "s.json"))
    assert ok.returncode == 0, ok.stderr
    assert json.loads((tmp_path / "s.json").read_text())["samples"] == 12800
    np.savetxt(tmp_path / "bare.csv", signal)
    refused = run_cli("stream", str(tiny_bundle), "--source", str(tmp_path / "bare.csv"), "--quiet")
    assert refused.returncode == 2 and "sample rate is unknown; add the line (e.g. '# fs=12800') or pass --fs HZ" \
        in refused.stderr
    ok = run_cli("stream", str(tiny_bundle), "--source", str(tmp_path / "bare.csv"), "--fs", "12800", "--quiet")
    assert ok.returncode == 0, ok.stderr
