"""Hostile and malformed input at every entry point: the project's error, a clear message, nothing else."""

import concurrent.futures
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecnn.errors import InputError
from edgecnn.readers import read_recordings
from tests.util import run_cli, subprocess_env, write_resealed

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


# --- every bad input, its error class and its message, at the library and through the CLI ---------
# Each case makes one bad file (or folder) under ``root``; ``bundle``/``run`` are clean copies to
# damage. The library entry point and the CLI must both refuse it with the same message.

FS = 12800.0
_X = np.random.default_rng(0).normal(size=30000).astype(np.float32)


class _RunsCode:
    """A pickle payload that would create a file if unpickled by the standard unpickler."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _truncate(full: Path, part: Path) -> Path:
    data = full.read_bytes()
    part.write_bytes(data[: len(data) // 2])
    full.unlink()
    return part


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _pickle(path: Path, data: dict) -> Path:
    path.write_bytes(pickle.dumps(data))
    return path


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def _make_truncated_wav(root: Path) -> Path:
    from scipy.io import wavfile

    wavfile.write(root / "full.wav", int(FS), (_X * 1000).astype(np.int16))
    return _truncate(root / "full.wav", root / "truncated.wav")


def _make_truncated_mat(root: Path) -> Path:
    from scipy.io import savemat

    savemat(root / "full.mat", {"X105_DE_time": _X[:, None]})
    return _truncate(root / "full.mat", root / "truncated.mat")


def _make_label_map_folder(root: Path) -> Path:
    folder = root / "recordings"
    folder.mkdir()
    np.savez(folder / "normal_1.npz", signal=_X, fs=FS, label="normal")
    np.savez(folder / "inner_1.npz", signal=_X, fs=FS, label="inner_race")
    return folder


def _make_code_pickle(root: Path) -> Path:
    return _pickle(root / "payload.pkl", {"signal": _RunsCode(root / "PWNED"), "label": np.eye(2)})


# name -> (make(root) -> path, extra CLI args, error class, message regex after the path)
DATA_CASES = {
    "empty file": (lambda r: _bytes(r / "empty.npz", b""), (), InputError,
                   "file is empty"),
    "truncated npz": (lambda r: _truncate(_npz(r / "full.npz", signal=_X, fs=FS), r / "truncated.npz"), (),
                      InputError, "not a readable npz recording"),
    "truncated wav": (_make_truncated_wav, (), InputError, "(WAV file is truncated|not a readable WAV file)"),
    "truncated pickle": (lambda r: _truncate(_pickle(r / "full.pkl", {"signal": _X.reshape(3, 10000),
                                                                      "label": np.eye(2)[[0, 1, 0]]}),
                                             r / "truncated.pkl"), (), InputError,
                         r"unsafe or corrupt pickle \(pickle data was truncated\)"),
    "truncated mat": (_make_truncated_mat, (), InputError, "not a readable MATLAB file"),
    "complex signal": (lambda r: _npz(r / "complex.npz", signal=_X.astype(np.complex64), fs=FS), (), InputError,
                       r"signal has dtype complex64; need real numbers \(int or float\)"),
    "string signal": (lambda r: _npz(r / "strings.npz", signal=np.array(["0.1"] * 20000), fs=FS), (), InputError,
                      r"signal has dtype <U3; need real numbers"),
    "object array in npz": (lambda r: _npz(r / "objects.npz", signal=np.array([1.0, "a", None] * 7000, dtype=object),
                                           fs=FS), (), InputError,
                            "not a readable npz recording .*Object arrays cannot be loaded"),
    "object array in pickle": (lambda r: _pickle(r / "objects.pkl", {"signal": np.array([[1.0, "a"]] * 2, dtype=object),
                                                                     "label": np.eye(2)}), (), InputError,
                               r"unsafe or corrupt pickle \(dtype 'O8' is refused"),
    "NaN in recording": (lambda r: _npz(r / "nan.npz", signal=np.where(np.arange(_X.size) == 7, np.nan, _X), fs=FS),
                         (), InputError, "signal has 1 NaN/Inf samples; clean or drop the recording"),
    "Inf in CSV recording": (lambda r: _bytes(r / "inf.csv", "\n".join(["# fs=12800"] + ["0.5"] * 20000
                                                                          + ["inf", "-inf"]).encode()),
                             (), InputError, "signal has 2 NaN/Inf samples"),
    "shorter than one window": (lambda r: _npz(r / "short.npz", signal=_X[:500], fs=FS, label="normal"), (),
                                InputError, "no windows of 10000 samples: .* 1 shorter than one window"),
    "rate not exactly resamplable": (lambda r: _npz(r / "oddrate.npz", signal=_X, fs=FS * np.sqrt(2)), (), InputError,
                                     r"recording oddrate: sample rate 18101.9\d* Hz cannot be resampled exactly"),
    "label map leaves a class empty": (_make_label_map_folder, ("--label-map", "normal=A,outer_race=B"), InputError,
                                       r"class\(es\) \['B'\] have no windows; check the label map"),
    "one-class data": (lambda r: _pickle(r / "oneclass.pkl", {"signal": _X[:20000].reshape(2, 10000),
                                                              "label": np.eye(2)[[0, 0]]}), (), InputError,
                       r"only one class \('A'\) has windows; need at least two"),
    "signal and label counts differ": (lambda r: _pickle(r / "mismatch.pkl", {"signal": _X.reshape(3, 10000),
                                                                              "label": np.eye(2)}), (), InputError,
                                       "3 signal rows but 2 label rows"),
    "pickle with a code-running payload": (_make_code_pickle, (), InputError,
                                           r"unsafe or corrupt pickle \(refused to load posix.system"),
}

#: Cases the stream source refuses too (a stream plays recordings; it does not window or label them). A NaN
#: stretch is not one: a replayed logger dropout streams through as the faults a live source gives
#: (tests/test_stream_decisions.py), while training refuses it (above).
STREAM_CASES = ["empty file", "truncated npz", "truncated wav", "truncated pickle", "truncated mat", "complex signal",
                "string signal", "object array in npz", "pickle with a code-running payload"]
#: Cases run through ``edgecnn parity --data`` as well (the bundle loads first, then the data).
PARITY_CASES = ["truncated npz", "NaN in recording", "rate not exactly resamplable", "one-class data",
                "pickle with a code-running payload"]


def _edit_manifest(bundle: Path, edit, *, reseal: bool = True) -> Path:
    """Edit the manifest; recompute its digest unless ``reseal`` is False (an edit the digest catches)."""
    path = bundle / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    if reseal:
        write_resealed(bundle, manifest)
    else:
        path.write_text(json.dumps(manifest))
    return bundle


def _symlink_model(bundle: Path) -> None:
    model = bundle / "model_int8.tflite"
    outside = bundle.parent / "elsewhere.tflite"
    model.rename(outside)
    model.symlink_to(outside)


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _reshape_everything(m: dict) -> None:
    # The manifest's own input shape follows the new DSP config, the models' inputs do not.
    m["dsp"]["window_samples"] = 12000
    m["input"]["shape"] = [1, 129, 53, 1]


BUNDLE_CASES = {
    "unknown schema": (lambda b: _edit_manifest(b, lambda m: m.update(schema_version=7)),
                       "schema_version 7 is newer than this edgecnn reads"),
    "not an edgecnn manifest": (lambda b: _edit_manifest(b, lambda m: m.update(format="tflite-thing")),
                                "format 'tflite-thing' is not 'edgecnn-bundle'"),
    "unknown feature_version": (lambda b: _edit_manifest(b, lambda m: m["dsp"].update(feature_version=99)),
                                r"feature_version 99 is not supported"),
    "manifest not JSON": (lambda b: (b / "manifest.json").write_text('{"format": "edgecnn-bundle",'),
                          "not valid JSON"),
    "missing model file": (lambda b: (b / "model_int8.tflite").unlink(),
                           "model_int8.tflite is listed in manifest.json but missing; the bundle is incomplete"),
    "altered model file": (lambda b: _flip_byte(b / "model_int8.tflite"),
                           "model_int8.tflite: sha256 does not match the manifest; the file was modified"),
    "input shape disagrees with DSP config": (
        lambda b: _edit_manifest(b, lambda m: m["input"].update(shape=[1, 129, 40, 1])),
        r"input shape \[1, 129, 40, 1\] does not match the DSP config's \[1, 129, 44, 1\]"),
    "model input disagrees with DSP config": (
        lambda b: _edit_manifest(b, _reshape_everything),
        r"model_int8.tflite takes input shape \[1, 129, 44, 1\], but the DSP config makes \[1, 129, 53, 1\]"),
    "manifest edited after export": (
        lambda b: _edit_manifest(b, lambda m: m.update(classes=m["classes"][::-1]), reseal=False),
        r"manifest.json: content does not match its bundle_digest .*; the manifest was modified after export"),
    "classes swapped, digest recomputed": (
        lambda b: _edit_manifest(b, lambda m: m.update(classes=m["classes"][::-1])),
        r"model_int8.tflite: the model was exported with classes \[\"A\", \"B\"\], the manifest says "
        r"\[\"B\", \"A\"\]"),
    "model file is a symbolic link": (_symlink_model,
                                      r"model_int8.tflite: a symbolic link \(or under one\); a bundle holds regular "
                                      r"files only"),
}

def _edit_run_config(run: Path, edit) -> None:
    path = run / "config.json"
    config = json.loads(path.read_text())
    edit(config)
    path.write_text(json.dumps(config))


#: Bundle cases also run through ``edgecnn stream`` (the same reader; a few suffice).
STREAMED_BUNDLE_CASES = ["unknown feature_version", "altered model file", "model input disagrees with DSP config",
                         "manifest edited after export", "model file is a symbolic link"]

RUN_CASES = {
    "missing model file": (lambda r: (r / "model.keras").unlink(), "model.keras is missing; the run is incomplete"),
    "truncated model file": (lambda r: (r / "model.keras").write_bytes((r / "model.keras").read_bytes()[:3000]),
                             "model.keras: not a loadable Keras model"),
    "unknown feature_version": (lambda r: _edit_run_config(r, lambda c: c["dsp"].update(feature_version=99)),
                                "feature_version 99 is not supported"),
    "truncated calibration": (lambda r: (r / "calibration.npz").write_bytes(b"PK\x03\x04 truncated"),
                              "calibration.npz: cannot read calibration windows"),
}

PROFILE_CASES = {
    "profile not JSON": ("{name: m0}", r"not valid JSON \(Expecting property name"),
    "profile with unknown keys": (json.dumps({"name": "m0", "flash": 1, "ram_bytes": 2, "clock_hz": 3}),
                                  r"unknown keys \['flash'\], missing keys \['flash_bytes'\]"),
    "profile with negative RAM": (json.dumps({"name": "m0", "flash_bytes": 65536, "ram_bytes": -1, "clock_hz": 4e7}),
                                  r"device profile 'm0': ram_bytes=-1 must be an integer > 0"),
    "profile that is a list": ("[1, 2]", "must be a JSON object, got list"),
}


def _make_data(name: str, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return DATA_CASES[name][0](root)


def _make_bundle(name: str, source: Path, root: Path) -> Path:
    bundle = root / "bundle"
    shutil.copytree(source, bundle)
    BUNDLE_CASES[name][0](bundle)
    return bundle


def _make_run(name: str, source: Path, root: Path) -> Path:
    run = root / "run"
    shutil.copytree(source, run)
    RUN_CASES[name][0](run)
    return run


def _make_profile(name: str, root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "profile.json"
    path.write_text(PROFILE_CASES[name][0])
    return path


@pytest.mark.parametrize("name", list(DATA_CASES))
def test_bad_data_is_refused_by_load_windows_with_class_and_message(tmp_path, name):
    from edgecnn.dataset import load_windows

    _, cli_args, error, message = DATA_CASES[name]
    path = _make_data(name, tmp_path)
    label_map = cli_args[1] if cli_args else None
    with pytest.raises(error, match=f"^{re.escape(str(path))}: {message}") as info:
        load_windows(path, label_map=label_map)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "PWNED").exists()  # the payload never ran


@pytest.mark.parametrize("name", STREAM_CASES)
def test_bad_data_is_refused_as_a_stream_source(tmp_path, name):
    from firmware_sim.sources import open_source

    _, _, error, message = DATA_CASES[name]
    path = _make_data(name, tmp_path)
    with pytest.raises(error, match=f"^{re.escape(str(path))}: {message}"):
        open_source(str(path), FS)
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("name", list(BUNDLE_CASES))
def test_bad_bundle_is_refused_by_load_bundle(tiny_bundle, tmp_path, name):
    from edgecnn.errors import BundleError
    from export.bundle import load_bundle

    bundle = _make_bundle(name, tiny_bundle, tmp_path)
    with pytest.raises(BundleError, match=f"^{re.escape(str(bundle))}.*{BUNDLE_CASES[name][1]}") as info:
        load_bundle(bundle)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", list(RUN_CASES))
def test_bad_run_directory_is_refused_by_export(tiny_run_dir, tmp_path, name):
    from export.writer import export_bundle

    run = _make_run(name, tiny_run_dir, tmp_path)
    with pytest.raises(InputError, match=f"^{re.escape(str(run))}.*{RUN_CASES[name][1]}") as info:
        export_bundle(run, tmp_path / "bundle", quiet=True)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "bundle").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary folder left behind


@pytest.mark.parametrize("name", list(PROFILE_CASES))
def test_bad_device_profile_is_refused(tmp_path, name):
    from edgecnn.errors import ConfigError
    from firmware_sim.profiles import load_profile

    path = _make_profile(name, tmp_path)
    with pytest.raises(ConfigError, match=f"{re.escape(str(path))}.*{PROFILE_CASES[name][1]}"):
        load_profile(path)


# --- the same through the command line: exit 2, one line naming the file and the problem --------
def _cli_cases(bundle_src: Path, run_src: Path, root: Path) -> dict[str, tuple[tuple[str, ...], str, str]]:
    """case id -> (CLI args, file the message must name, message regex)."""
    cases = {}
    for i, name in enumerate(DATA_CASES):
        _, extra, _, message = DATA_CASES[name]
        path = _make_data(name, root / f"train{i}")
        out = root / f"train{i}" / "run_out"
        cases[f"train --data: {name}"] = (("train", "--data", str(path), *extra, "--epochs", "1", "--quiet",
                                           "--out", str(out)), str(path), message)
    for i, name in enumerate(PARITY_CASES):
        path = _make_data(name, root / f"parity{i}")
        cases[f"parity --data: {name}"] = (("parity", str(bundle_src), "--data", str(path), "--quiet",
                                            "--json", str(root / f"parity{i}" / "p.json")), str(path),
                                           DATA_CASES[name][3])
    for i, name in enumerate(STREAM_CASES):
        path = _make_data(name, root / f"stream{i}")
        cases[f"stream --source: {name}"] = (("stream", str(bundle_src), "--source", str(path), "--quiet"),
                                             str(path), DATA_CASES[name][3])
    for i, name in enumerate(BUNDLE_CASES):
        bundle = _make_bundle(name, bundle_src, root / f"bundle{i}")
        for command in ("inspect", "stream") if name in STREAMED_BUNDLE_CASES else ("inspect",):
            cases[f"{command}: {name}"] = ((command, str(bundle)), str(bundle), BUNDLE_CASES[name][1])
    for i, name in enumerate(RUN_CASES):
        run = _make_run(name, run_src, root / f"run{i}")
        cases[f"export: {name}"] = (("export", str(run), "--out", str(root / f"run{i}" / "bundle_out"), "--quiet"),
                                    str(run), RUN_CASES[name][1])
    for i, name in enumerate(PROFILE_CASES):
        path = _make_profile(name, root / f"profile{i}")
        cases[f"stream --profile: {name}"] = (("stream", str(bundle_src), "--profile", str(path), "--quiet"),
                                              str(path), PROFILE_CASES[name][1])
    return cases


CLI_CASE_IDS = ([f"train --data: {n}" for n in DATA_CASES] + [f"parity --data: {n}" for n in PARITY_CASES]
                + [f"stream --source: {n}" for n in STREAM_CASES]
                + [f"inspect: {n}" for n in BUNDLE_CASES] + [f"stream: {n}" for n in STREAMED_BUNDLE_CASES]
                + [f"export: {n}" for n in RUN_CASES] + [f"stream --profile: {n}" for n in PROFILE_CASES])


@pytest.fixture(scope="module")
def cli_results(tiny_bundle, tiny_run_dir, tmp_path_factory):
    """Every CLI case run once, a few processes at a time (each is a fresh interpreter)."""
    root = tmp_path_factory.mktemp("cli_failures")
    cases = _cli_cases(tiny_bundle, tiny_run_dir, root)
    assert sorted(cases) == sorted(CLI_CASE_IDS)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
        procs = dict(zip(cases, pool.map(lambda args: run_cli(*args, timeout=300), [c[0] for c in cases.values()])))
    return {name: (cases[name], procs[name]) for name in cases}, root, time.perf_counter() - started


@pytest.mark.slow
@pytest.mark.parametrize("case", CLI_CASE_IDS)
def test_cli_refuses_bad_input_with_one_line_naming_the_file_exit_2(cli_results, case):
    results, root, _ = cli_results
    (args, named_file, message), proc = results[case]
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    assert re.match(rf"^edgecnn {args[0]}: error: .*{re.escape(named_file)}.*{message}", lines[0]), lines[0]
    assert not list(root.rglob("PWNED"))
    # Nothing was written: no run directory, bundle, JSON or temporary file.
    for out in ("run_out", "bundle_out", "p.json"):
        assert not list(root.rglob(out)) and not list(root.rglob(f".{out}*"))


def test_train_refuses_bad_data_before_tensorflow_loads(tmp_path):
    """Validation comes first: a bad --data never pays for importing TensorFlow, let alone training."""
    names = ["truncated npz", "one-class data", "label map leaves a class empty", "rate not exactly resamplable"]
    calls = []
    for i, name in enumerate(names):
        path = _make_data(name, tmp_path / str(i))
        calls.append(["train", "--data", str(path), *DATA_CASES[name][1], "--quiet", "--out", str(tmp_path / f"o{i}")])
    script = ("import json, sys\nfrom edgecnn.cli import main\n"
              f"codes = [main(args) for args in {calls!r}]\n"
              "print(json.dumps({'codes': codes, 'tensorflow': 'tensorflow' in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=subprocess_env(),
                          timeout=300)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"codes": [2] * len(names), "tensorflow": False}, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == len(names)
