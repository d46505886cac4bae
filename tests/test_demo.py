import json

import pytest

from tests.util import run_cli


@pytest.mark.slow
def test_demo_runs_every_stage_and_summarises(tmp_path):
    out = tmp_path / "demo"
    # big enough that the model is not degenerate (the demo trains with --strict and stops before export
    # on a degenerate one): every stage must run
    proc = run_cli("demo", "--out", str(out), "--n", "480", "--epochs", "6", "--quiet", timeout=900)
    assert proc.returncode in (0, 1) and "is degenerate" not in proc.stdout, proc.stderr[-3000:]
    for name in ("data.pkl", "run_edge/model.keras", "run_edge/metrics.json", "bundle_edge/manifest.json",
                 "bundle_edge/model_int8.tflite", "bundle_edge.parity.json", "parity_edge.png", "stream_edge.json",
                 "events_edge.jsonl", "stream_edge.png", "report.html"):
        assert (out / name).exists(), name
    summary = proc.stdout.split("edgecnn demo summary")[1]
    parity = json.loads((out / "bundle_edge.parity.json").read_text())
    assert not (out / "bundle_edge" / "parity.json").exists()  # results stay out of the signed content
    acc = parity["model_level"]["variants"]["tflite_int8/litert"]["accuracy"]
    assert f"int8 {acc:.4f}" in summary
    # the exit code is the parity gate's verdict and the degenerate-model guard's (train --strict); the
    # summary says the same
    passed = parity["gate"]["passed"]
    degenerate = json.loads((out / "run_edge" / "metrics.json").read_text())["degenerate"]
    assert proc.returncode == (0 if passed and not degenerate else 1)
    assert ("parity gate passed" if passed else "parity gate FAILED") in summary
    assert ("edge: DEGENERATE model" in summary) == degenerate
    for stage in ("synthesise", "train edge", "export edge", "parity edge", "stream edge", "report", "total"):
        assert stage in summary
    stream = json.loads((out / "stream_edge.json").read_text())
    assert stream["decisions"] > 200
    assert (out / ".edgecnn-demo").is_file()  # so `make demo` can run again into the same folder


def test_a_demo_folder_is_replaced_and_any_other_folder_refused(tmp_path):
    from edgecnn.commands.demo import MARKER, prepare_out
    from edgecnn.errors import InputError

    demo = tmp_path / "demo"
    prepare_out(demo, force=False)  # new folder: created and marked
    (demo / "run_edge").mkdir()
    (demo / "run_edge" / "model.keras").write_bytes(b"old")
    prepare_out(demo, force=False)  # a previous demo's: emptied, marked again
    assert sorted(p.name for p in demo.iterdir()) == [MARKER]

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(InputError, match=r"is not empty and is not a previous demo's \(no \.edgecnn-demo file\)"):
        prepare_out(mine, force=False)
    (mine / MARKER).write_text("forged or edited")  # only edgecnn's own marker text counts
    with pytest.raises(InputError):
        prepare_out(mine, force=False)
    prepare_out(mine, force=True)  # --force writes into it and keeps its files
    assert (mine / "thesis.tex").read_text() == "precious"
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    proc = run_cli("demo", "--out", str(other), "--quiet")  # through the CLI: refused before any work
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "no .edgecnn-demo file" in proc.stderr
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
