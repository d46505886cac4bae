"""Interrupted commands leave the previous file (or none), never half a file.

Every command that writes goes through ``edgecnn.fileio`` (files) or a temporary folder renamed
into place (run directories, bundles). Each test interrupts a real command at the worst moment:
half-way through writing, or with the new file complete but not yet renamed (``os.replace``
raising KeyboardInterrupt, as Ctrl-C would), and checks the target and that no temporary file is
left behind. The event log is append-only and flushed per line: a killed stream leaves whole lines.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

from edgecnn import fileio, synth
from edgecnn.cli import main
from tests.util import REPO, subprocess_env


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture
def ctrl_c_at_rename(monkeypatch):
    """Call it to interrupt every later atomic file write after its temporary file is complete."""

    def interrupted(src, dst):
        raise KeyboardInterrupt

    def arm() -> None:
        # Only edgecnn.fileio sees the interrupted rename (os itself stays intact for everyone else).
        os_seen_by_fileio = types.ModuleType("os")
        os_seen_by_fileio.__dict__.update(vars(os))
        os_seen_by_fileio.replace = interrupted
        monkeypatch.setattr(fileio, "os", os_seen_by_fileio)

    return arm


def test_atomic_open_keeps_the_previous_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"previous")
    with pytest.raises(OSError, match="disk full"), fileio.atomic_open(target) as fh:
        fh.write(b"half of the new cont")
        raise OSError("disk full")
    assert target.read_bytes() == b"previous" and _leftovers(tmp_path) == []
    fileio.write_json(target, {"x": np.float32(1.5), "nan": float("nan"), "path": tmp_path})
    assert json.loads(target.read_text()) == {"x": 1.5, "nan": None, "path": str(tmp_path)}


def test_a_process_killed_mid_write_leaves_the_previous_file(tmp_path):
    """SIGKILL (no cleanup at all) while the new content is half written."""
    target = tmp_path / "data.pkl"
    target.write_bytes(b"previous")
    script = ("import os, signal, sys\nfrom edgecnn.fileio import atomic_open\n"
              "with atomic_open(sys.argv[1]) as fh:\n"
              "    fh.write(b'x' * 100000)\n    fh.flush()\n    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(target)], env=subprocess_env(), timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"previous"
    # A killed process cannot clean up: its temporary file is hidden beside the target, never it.
    assert all(name.startswith(".data.pkl.tmp-") for name in _leftovers(tmp_path))


def test_synth_interrupted_keeps_the_previous_pickle(tmp_path, monkeypatch):
    target = tmp_path / "data.pkl"
    synth.write_pickle(target, synth.generate(n=4, seed=0))
    before = target.read_bytes()

    def dump_half(data, fh, protocol=None):
        fh.write(pickle.dumps(data, protocol=protocol)[:1000])
        raise KeyboardInterrupt

    monkeypatch.setattr(synth.pickle, "dump", dump_half)
    assert main(["synth", "--out", str(target), "--n", "8", "--quiet"]) == 130
    assert target.read_bytes() == before and _leftovers(tmp_path) == []


def test_inspect_json_interrupted_keeps_the_previous_report(tiny_bundle, tmp_path, ctrl_c_at_rename):
    out = tmp_path / "inspect.json"
    out.write_text('{"previous": true}\n')
    ctrl_c_at_rename()
    assert main(["inspect", str(tiny_bundle), "--json", str(out)]) == 130
    assert json.loads(out.read_text()) == {"previous": True} and _leftovers(tmp_path) == []


def test_stream_json_interrupted_keeps_the_previous_report(tiny_bundle, tmp_path, ctrl_c_at_rename):
    out = tmp_path / "summary.json"
    out.write_text('{"previous": true}\n')
    ctrl_c_at_rename()
    assert main(["stream", str(tiny_bundle), "--source", "synth:duration=2", "--json", str(out), "--quiet"]) == 130
    assert json.loads(out.read_text()) == {"previous": True} and _leftovers(tmp_path) == []


def test_parity_interrupted_leaves_no_parity_json(tiny_bundle, tmp_path, ctrl_c_at_rename):
    import shutil

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    data = synth.write_pickle(tmp_path / "data.pkl", synth.generate(n=16, seed=5, n_recordings=4))
    ctrl_c_at_rename()
    code = main(["parity", str(bundle), "--data", str(data), "--stream", "none", "--runtimes", "litert",
                 "--no-keras", "--quiet", "--json", str(tmp_path / "parity.json")])
    assert code == 130
    assert not (tmp_path / "bundle.parity.json").exists() and not (tmp_path / "parity.json").exists()
    assert _leftovers(bundle) == [] and _leftovers(tmp_path) == []


def test_export_interrupted_keeps_the_previous_bundle(tiny_run_dir, tiny_bundle, tmp_path, monkeypatch):
    import shutil

    from export import writer
    from export.bundle import load_bundle

    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    before = (out / "manifest.json").read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # after the models are written, before golden vectors and manifest

    monkeypatch.setattr(writer, "_write_golden", interrupted)
    assert main(["export", str(tiny_run_dir), "--out", str(out), "--force", "--quiet",
                 "--formats", "tflite_int8"]) == 130
    assert (out / "manifest.json").read_bytes() == before
    load_bundle(out)  # the previous bundle, complete and verified
    assert _leftovers(tmp_path) == []


def test_train_run_directory_interrupted_keeps_the_previous_run(tiny_run_dir, tmp_path):
    from edgecnn import train
    from edgecnn.rundir import load_keras_model, read_run

    out = tmp_path / "run"
    (out).mkdir()
    (out / "config.json").write_text('{"previous": true}')
    model = load_keras_model(tiny_run_dir / "model.keras")

    def plots_interrupted(folder):
        raise KeyboardInterrupt  # the model and JSON files are written by now

    with pytest.raises(KeyboardInterrupt):
        train._write_run(out, force=True, model=model, config={"format": "edgecnn-run"}, split={}, history={},
                         metrics={}, calibration=(np.zeros((1, 10000), np.float32), np.zeros(1)),
                         plots=plots_interrupted)
    assert [p.name for p in out.iterdir()] == ["config.json"]
    assert json.loads((out / "config.json").read_text()) == {"previous": True}
    assert _leftovers(tmp_path) == []
    read_run(tiny_run_dir)  # the source run is untouched


def test_a_killed_stream_leaves_only_whole_event_lines(tiny_bundle, tmp_path):
    """Each event is on disk as a whole line as soon as it happens, while the stream still runs."""
    events = tmp_path / "events.jsonl"
    cmd = [sys.executable, "-m", "edgecnn", "stream", str(tiny_bundle), "--source",
           "synth:duration=30,onset=1,seed=1", "--decision-every", "7f", "--smooth", "1", "--min-dwell", "0",
           "--on", "0.5", "--off", "0.499", "--events", str(events), "--realtime", "--quiet"]
    # thresholds a hair apart: the 2-epoch tiny model's p(B) moves in quantisation steps around 0.5, so
    # the state changes within seconds (entering B needs p(B) >= 0.5 and p(A) <= 0.499)
    proc = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not events.exists() or "\n" not in events.read_text()):
            time.sleep(0.05)
        alive_at_kill = proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert alive_at_kill  # paced at the sensor rate, 30 s of stream: the event was flushed mid-run
    text = events.read_text()
    assert text.endswith("\n")
    assert all(json.loads(line)["event"] == "state" for line in text.splitlines())


def test_a_plot_that_fails_mid_save_keeps_the_previous_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    target = tmp_path / "plot.png"
    target.write_bytes(b"previous png")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])

    class FailingFigure:
        def savefig(self, fh, **kwargs):
            fig.savefig(fh, **kwargs)
            fh.truncate(fh.tell() // 2)
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        fileio.save_figure(FailingFigure(), target)
    assert target.read_bytes() == b"previous png" and _leftovers(tmp_path) == []
    fileio.save_figure(fig, target)
    plt.close(fig)
    assert target.read_bytes().startswith(b"\x89PNG")
