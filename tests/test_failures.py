"""Hostile and malformed input at every entry point: the project's error, a clear message, nothing else."""

import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecnn.errors import InputError
from edgecnn.readers import read_recordings
from tests.util import run_cli

SUFFIXES = [".pkl", ".npz", ".wav", ".csv", ".mat"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(min_size=1, max_size=400), suffix=st.sampled_from(SUFFIXES))
def test_every_reader_given_random_bytes_raises_input_error(tmp_path, payload, suffix):
    path = tmp_path / f"random{suffix}"
    path.write_bytes(payload)
    try:
        recordings = read_recordings(path)
    except InputError as exc:
        assert str(path) in str(exc)
    else:  # random bytes that happen to parse (e.g. a CSV of digits) must still be valid recordings
        for rec in recordings:
            assert rec.signal.dtype == np.float32 and np.all(np.isfinite(rec.signal)) and rec.fs > 0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.floats(min_value=0.05, max_value=0.95), suffix=st.sampled_from([".npz", ".wav", ".pkl", ".mat"]))
def test_truncated_real_files_raise_input_error(tmp_path, cut, suffix):
    from scipy.io import savemat, wavfile

    x = np.random.default_rng(0).normal(size=30000).astype(np.float32)
    full = tmp_path / f"full{suffix}"
    if suffix == ".npz":
        np.savez(full, signal=x, fs=12800.0)
    elif suffix == ".wav":
        wavfile.write(full, 12800, (x * 1000).astype(np.int16))
    elif suffix == ".pkl":
        full.write_bytes(pickle.dumps({"signal": x.reshape(3, 10000), "label": np.eye(2)[[0, 1, 0]]}))
    else:
        savemat(full, {"X105_DE_time": x[:, None]})
    data = full.read_bytes()
    part = tmp_path / f"part{suffix}"
    part.write_bytes(data[: max(1, int(len(data) * cut))])
    with pytest.raises(InputError, match=str(part)):
        read_recordings(part)


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b""), "file is empty"),
    (lambda p: np.savez(p, signal=np.array(["a", "b"]), fs=1.0), "signal has dtype <U1; need real numbers"),
    (lambda p: np.savez(p, signal=np.array([1.0, np.inf] * 6000), fs=12800.0), "signal has 6000 NaN/Inf samples"),
    (lambda p: np.savez(p, signal=np.ones(500), fs=12800.0, label="x"), "shorter than one window"),
])
def test_bad_recordings_raise_input_error_with_the_reason(tmp_path, make, message):
    from edgecnn.dataset import load_windows

    path = tmp_path / "rec.npz"
    make(path)
    with pytest.raises(InputError, match=message):
        load_windows(path)


def test_cli_error_names_the_file(tmp_path):
    proc = run_cli("synth", "--out", str(tmp_path / "no" / "x.txt"))
    assert proc.returncode == 2 and "x.txt" in proc.stderr and "Traceback" not in proc.stderr
