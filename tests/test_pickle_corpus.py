"""The pickle corpus (tests/pickle_corpus): crafted pickles are refused by the CLI in their own process
(exit 2, one line, no side effect); plain reference-format pickles of protocols 0-5, with numpy 1.x and
2.x module paths, load exactly, here (numpy 2) and in the numpy 1.26 device environment."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecnn import safe_pickle
from edgecnn.readers import read_recordings
from tests.pickle_corpus import build
from tests.util import REPO, run_cli, subprocess_env

CORPUS = Path(build.__file__).parent
EXPECTED = json.loads((CORPUS / build.EXPECTED_FILE).read_text())
REFUSED = sorted(name for name, e in EXPECTED.items() if e["outcome"] == "refused")
LOADS = sorted(name for name, e in EXPECTED.items() if e["outcome"] == "loads")
DEVICE_PYTHON = REPO / ".venv-device" / "bin" / "python"


def test_the_committed_corpus_is_what_build_py_writes():
    files = build.build()
    on_disk = {p.name for p in CORPUS.iterdir() if p.suffix in (".pkl", ".json")}
    assert on_disk == set(files)
    for name, data in files.items():
        assert (CORPUS / name).read_bytes() == data, f"{name} differs: run python tests/pickle_corpus/build.py"
    assert len(REFUSED) >= 50 and len(LOADS) >= 12


@pytest.mark.parametrize("name", REFUSED)
def test_crafted_pickle_exits_2_with_one_line_and_no_side_effect(tmp_path, name):
    target = tmp_path / f"{name}.pkl"
    shutil.copyfile(CORPUS / target.name, target)
    proc = run_cli("train", "--data", target.name, "--out", "run", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])  # a signal would be negative
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert re.match(rf"edgecnn train: error: {re.escape(target.name)}: ", lines[0]), lines[0]
    assert re.search(EXPECTED[name]["message"], lines[0]), lines[0]
    # nothing ran: no marker file, no run directory, nothing else written beside the pickle
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def _same(loaded, expected, where: str) -> None:
    assert type(loaded) is (dict if isinstance(expected, dict) else type(expected)), where
    if isinstance(expected, dict):
        assert list(loaded) == list(expected), where
        for key in expected:
            _same(loaded[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (np.ndarray, np.generic)):
        assert loaded.dtype == expected.dtype and np.shape(loaded) == np.shape(expected), where
        assert np.asarray(loaded).tobytes() == np.asarray(expected).tobytes(), where
    else:
        assert loaded == expected, where


@pytest.mark.parametrize("name", LOADS)
def test_plain_pickle_loads_exactly(name):
    path = CORPUS / f"{name}.pkl"
    _same(safe_pickle.load(path), build.VALID_DATA[EXPECTED[name]["data"]], name)
    recordings = read_recordings(path)
    assert recordings and all(r.signal.dtype == np.float32 and r.fs == 12800.0 for r in recordings)


def test_ordinary_protocol_2_pickle_loads(tmp_path):
    """Python's own pickler at protocol 2 spells bytes as _codecs.encode: it used to be refused."""
    import pickle

    data = build.reference_data()
    (tmp_path / "p2.pkl").write_bytes(pickle.dumps(data, protocol=2))
    recordings = read_recordings(tmp_path / "p2.pkl")
    np.testing.assert_array_equal(np.concatenate([r.signal for r in recordings]), data["signal"].astype(np.float32))


_DEVICE_SCRIPT = """
import hashlib, json, sys
from pathlib import Path
import numpy as np
from edgecnn import safe_pickle
from edgecnn.errors import InputError
from edgecnn.readers import read_recordings

def describe(value):
    if isinstance(value, dict):
        return {k: describe(v) for k, v in value.items()}
    if isinstance(value, (np.ndarray, np.generic)):
        array = np.asarray(value)
        return [array.dtype.str, list(array.shape), hashlib.sha256(array.tobytes()).hexdigest()]
    return repr(value)

out = {"numpy": np.__version__, "loaded": {}, "refused": {}}
for path in sorted(Path(sys.argv[1]).glob("*.pkl")):
    try:
        read_recordings(path)
        out["loaded"][path.stem] = describe(safe_pickle.load(path))
    except InputError as exc:
        out["refused"][path.stem] = str(exc)
print(json.dumps(out))
"""


@pytest.mark.skipif(not DEVICE_PYTHON.exists(), reason=".venv-device is absent: build it with `make device-env`")
def test_corpus_in_the_numpy_1_device_environment():
    proc = subprocess.run([str(DEVICE_PYTHON), "-c", _DEVICE_SCRIPT, str(CORPUS)], capture_output=True, text=True,
                          timeout=300, env=subprocess_env(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    device = json.loads(proc.stdout)
    assert int(device["numpy"].split(".")[0]) == 1
    assert sorted(device["loaded"]) == LOADS and sorted(device["refused"]) == REFUSED
    here = subprocess.run([sys.executable, "-c", _DEVICE_SCRIPT, str(CORPUS)], capture_output=True, text=True,
                          timeout=300, env=subprocess_env(), cwd=REPO)
    assert here.returncode == 0, here.stderr[-3000:]
    assert device["loaded"] == json.loads(here.stdout)["loaded"]  # the same arrays, bit for bit
    for name, message in device["refused"].items():
        assert re.search(EXPECTED[name]["message"], message), (name, message)
