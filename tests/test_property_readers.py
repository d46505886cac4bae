"""Property: every reader, given anything, raises the project's error or returns valid data.

Beyond random bytes (tests/test_failures.py): well-formed containers with hostile content (npz and
pickles of random arrays, dtypes, shapes and rates), valid files with random bytes flipped,
bundle manifests with any field replaced by any JSON value, and device profiles of any JSON. The
only acceptable outcomes are the project's error class (naming the file) or a valid result; any
other exception is a bug a user would see as a traceback.
"""

from __future__ import annotations

import copy
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgecnn.errors import BundleError, ConfigError, InputError
from edgecnn.readers import read_recordings
from tests.util import write_resealed

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

DTYPES = st.sampled_from(["float32", "float64", "int16", "int64", "uint8", "bool", "complex64", "<U3", "S2",
                          "datetime64[s]", "float16"])
ARRAYS = DTYPES.flatmap(lambda dt: hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                                             max_side=6)))
RATES = st.one_of(st.sampled_from([12800.0, 12000.0, 48000.0, 1.0, 0.0, -5.0, float("nan"), float("inf"),
                                   12345.678, 1e-9, 1e12]),
                  st.text(max_size=4), st.integers(-3, 3), st.none())
JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
                    | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                max_size=4), max_leaves=10)


def _assert_valid_or_input_error(path: Path) -> None:
    try:
        recordings = read_recordings(path)
    except InputError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:
        for rec in recordings:
            assert rec.signal.dtype == np.float32 and rec.signal.size > 0
            assert np.all(np.isfinite(rec.signal)) and np.isfinite(rec.fs) and rec.fs > 0


@FUZZ
@given(signal=ARRAYS, fs=RATES, extra=st.dictionaries(st.sampled_from(["label", "load_hp", "rpm"]), ARRAYS,
                                                      max_size=2))
def test_npz_with_any_arrays_and_rate(tmp_path, signal, fs, extra):
    path = tmp_path / "rec.npz"
    arrays = {"signal": signal, **extra}
    if fs is not None:
        arrays["fs"] = np.asarray(fs)
    np.savez(path, **arrays)
    _assert_valid_or_input_error(path)


@FUZZ
@given(data=st.dictionaries(st.sampled_from(["signal", "label", "time", "fs", "recording", "classes"]),
                            st.one_of(ARRAYS, RATES, st.lists(st.text(max_size=3), max_size=3)), max_size=6),
       as_list=st.booleans())
def test_pickle_with_any_content(tmp_path, data, as_list):
    path = tmp_path / "data.pkl"
    path.write_bytes(pickle.dumps([data] if as_list else data))
    _assert_valid_or_input_error(path)


def _valid_file(folder: Path, suffix: str) -> Path:
    from scipy.io import savemat, wavfile

    x = np.random.default_rng(1).normal(size=2000).astype(np.float32)
    path = folder / f"valid{suffix}"
    if suffix == ".npz":
        np.savez(path, signal=x, fs=12800.0, label="normal")
    elif suffix == ".wav":
        wavfile.write(path, 12800, (x * 1000).astype(np.int16))
    elif suffix == ".mat":
        savemat(path, {"X105_DE_time": x[:, None], "X105RPM": 1797})
    elif suffix == ".pkl":
        path.write_bytes(pickle.dumps({"signal": x.reshape(2, 1000), "label": np.eye(2)}))
    else:
        path.write_text("# fs=12800\n" + "\n".join(f"{v:.5f}" for v in x))
    return path


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("valid")
    return {s: _valid_file(folder, s).read_bytes() for s in (".npz", ".wav", ".mat", ".pkl", ".csv")}


@FUZZ
@given(suffix=st.sampled_from([".npz", ".wav", ".mat", ".pkl", ".csv"]),
       flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=8),
       tail=st.sampled_from(["keep", "cut", "extend"]))
def test_valid_files_with_flipped_bytes(tmp_path, valid_files, suffix, flips, tail):
    data = bytearray(valid_files[suffix])
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    if tail == "cut":
        data = data[: len(data) - len(data) // 7]
    elif tail == "extend":
        data += bytes(range(256))
    path = tmp_path / f"mutated{suffix}"
    path.write_bytes(bytes(data))
    _assert_valid_or_input_error(path)


def _paths(node, prefix=()):
    """Every (path of keys) inside a JSON document."""
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node[:3]):
            yield from _paths(value, (*prefix, i))


@pytest.fixture(scope="module")
def manifest_doc(tiny_bundle):
    return json.loads((tiny_bundle / "manifest.json").read_text())


@FUZZ
@given(data=st.data())
def test_bundle_manifest_with_any_field_replaced(tiny_bundle, manifest_doc, tmp_path_factory, data):
    from export.bundle import load_bundle

    doc = copy.deepcopy(manifest_doc)
    where = data.draw(st.sampled_from(list(_paths(doc))[1:]))
    value = data.draw(JSON)
    node = doc
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    bundle = tmp_path_factory.mktemp("fuzzed") / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    if where[0] != "bundle_digest":  # as a forger would; an edited digest itself must be refused
        write_resealed(bundle, doc)
    else:
        (bundle / "manifest.json").write_text(json.dumps(doc))
    try:
        loaded = load_bundle(bundle)
    except BundleError as exc:
        assert "\n" not in str(exc)
    else:  # a field the reader does not need, or a value as good as the original
        assert loaded.cfg.input_shape[:2] == (loaded.cfg.n_freq, loaded.cfg.n_frames)
        assert len(loaded.classes) >= 2 and loaded.models
        # `edgecnn inspect` shows whatever a loadable bundle's manifest holds, without crashing.
        from edgecnn.commands.inspect import render, summary

        assert str(bundle) in render(summary(loaded))
    finally:
        shutil.rmtree(bundle.parent, ignore_errors=True)


@FUZZ
@given(doc=st.one_of(JSON, st.fixed_dictionaries({"name": JSON, "flash_bytes": JSON, "ram_bytes": JSON,
                                                  "clock_hz": JSON})))
def test_device_profile_of_any_json(tmp_path, doc):
    from firmware_sim.profiles import DeviceProfile, load_profile

    path = tmp_path / "profile.json"
    path.write_text(json.dumps(doc))
    try:
        profile = load_profile(path)
    except ConfigError as exc:
        assert str(path) in str(exc)
    else:
        assert isinstance(profile, DeviceProfile) and profile.ram_bytes > 0 and profile.flash_bytes > 0
