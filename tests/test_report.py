"""The HTML report: built from a real run, bundle, parity results and stream result, checked in a real browser.

The browser test starts Debian's chromium headless (no network, fresh profile), lets a small probe
script (added to a copy of the page; the report itself has no JavaScript) record every image's
``naturalWidth``, dumps the rendered DOM and takes a screenshot. It is skipped only where chromium is
not installed (``.ci/run`` installs it).
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from edgecnn.cli import main
from edgecnn.errors import EdgeCNNError
from edgecnn.report import (
    SECTIONS,
    Missing,
    ReportInputs,
    Section,
    collect,
    locate,
    plot_state_timelines,
    render_html,
    size,
)
from tests.util import REPO, subprocess_env, write_resealed

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars",
                  "--disable-dev-shm-usage")  # containers often have a tiny /dev/shm
PROBE = ("<script>window.addEventListener('load', () => { for (const img of document.images) "
         "{ img.setAttribute('data-natural-width', img.naturalWidth); } "
         "for (const box of document.querySelectorAll('.scroll')) "
         "{ box.setAttribute('data-widths', box.scrollWidth + ' ' + box.clientWidth); } "
         "const b = document.body; b.setAttribute('data-page-width', document.documentElement.scrollWidth); "
         "b.setAttribute('data-view-width', window.innerWidth); b.setAttribute('data-probe', 'done'); });</script>")


class PageParser(HTMLParser):
    """Images with their attributes, ids of sections, and the text of every table cell by table id."""

    def __init__(self) -> None:
        super().__init__()
        self.images: list[dict] = []
        self.sections: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.body: dict = {}
        self.boxes: dict[str, str] = {}
        self.tags: set[str] = set()
        self.texts: list[str] = []
        self._box: str | None = None
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "body":
            self.body = attrs
        elif tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "div" and "data-widths" in attrs:
            self._box = attrs["data-widths"]
        elif tag == "table":
            self._table = attrs.get("id") or f"table{len(self.tables)}"
            self.tables[self._table] = []
            if self._box is not None:
                self.boxes[self._table], self._box = self._box, None
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.texts.append(data)
        if self._cell is not None:
            self._cell.append(data)

    @property
    def text(self) -> str:
        """The page's text as a browser shows it (entities decoded), whitespace runs as one space."""
        return re.sub(r"\s+", " ", "".join(self.texts))


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def demo_folder(trained_run_dir, trained_bundle, trained_data, tmp_path_factory) -> Path:
    """What `edgecnn demo --out DIR` leaves: a run, its bundle and its parity results, a stream result and plot."""
    folder = tmp_path_factory.mktemp("report_demo")
    shutil.copytree(trained_run_dir, folder / "run")
    # A copy: other tests run parity on the shared bundle and would overwrite its parity results.
    bundle = shutil.copytree(trained_bundle, folder / "bundle")
    assert main(["parity", str(bundle), "--data", str(trained_data), "--debug-layers", "--quiet"]) in (0, 1)
    assert main(["stream", str(bundle), "--source", "synth:duration=20,onset=10,seed=1", "--json",
                 str(folder / "stream.json"), "--plot", str(folder / "stream.png"), "--profile", "cortex-m4",
                 "--quiet"]) == 0
    return folder


@pytest.fixture(scope="module")
def report(demo_folder) -> Path:
    out = demo_folder / "report.html"
    assert main(["report", str(demo_folder), "--out", str(out), "--quiet"]) == 0
    return out


def _chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    profile.mkdir()
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                          text=True, timeout=180)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")
def test_report_renders_in_headless_chromium(report, demo_folder, tmp_path):
    probed = tmp_path / "probed.html"
    probed.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    proc = _chromium("--window-size=800,2000", "--virtual-time-budget=10000", "--dump-dom", probed.as_uri(),
                     tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = parse(proc.stdout)
    assert dom.body.get("data-probe") == "done", "the page did not finish loading"
    # Every image decoded: the run's four plots, the stream plot and the parity stream timelines.
    assert len(dom.images) == 6
    widths = {img["alt"]: int(img["data-natural-width"]) for img in dom.images}
    assert all(w > 0 for w in widths.values()), widths
    assert widths["training curves"] == 810  # the run's own PNG (9 in x 90 dpi), not a re-plot
    # Nothing runs off an 800-pixel window: a table wider than its section scrolls inside its own box, and
    # the quantisation-debug table (long tensor names beside the numbers) fits its box without scrolling.
    assert int(dom.body["data-page-width"]) <= int(dom.body["data-view-width"]) == 800
    scroll_width, box_width = map(int, dom.boxes["layers-table"].split())
    assert scroll_width <= box_width

    # The parity table shows the bundle's figures, variant by variant.
    parity = json.loads((demo_folder / "bundle.parity.json").read_text())  # parity writes beside the bundle
    model = parity["model_level"]
    rows = {row[0]: row for row in dom.tables["parity-table"][1:]}
    assert set(rows) == set(model["variants"])
    ref_acc = model["variants"][model["reference"]]["accuracy"]
    for name, v in model["variants"].items():
        assert rows[name][3] == f"{v['accuracy']:.4f}", name
        assert rows[name][4] == f"{ref_acc - v['accuracy']:.4f}", name
        assert rows[name][5] == f"{v['vs_reference']['agreement']:.4f}", name
        assert rows[name][9] == f"{v['ms_per_window']:.2f}", name
    gate_text = "PASSED" if parity["gate"]["passed"] else "FAILED"
    assert f"Gate {gate_text}" in re.sub(r"<[^>]+>", "", proc.stdout)
    streams = dom.tables["stream-parity-streams"][1:]
    assert [r[3] for r in streams] == [f"{s['decision_agreement']:.4f}" for s in parity["stream_level"]["streams"]]
    # The layers with the largest int8 error (--debug-layers), worst first, tensor names whole.
    worst = sorted(parity["debug_layers"], key=lambda r: -r["rmse_over_scale"])[:10]
    layers = dom.tables["layers-table"][1:]
    assert [(r[1], r[2]) for r in layers] == [(w["tensor"], f"{w['rmse_over_scale']:.3f}") for w in worst]

    shot = tmp_path / "report.png"
    proc = _chromium("--window-size=1280,4000", f"--screenshot={shot}", report.as_uri(), tmp_path=tmp_path)
    assert proc.returncode == 0 and shot.is_file(), proc.stderr[-2000:]
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    assert pixels.shape == (4000, 1280, 3)
    # The header band is the dark blue of the stylesheet, the page below is not blank.
    assert pixels[40, 40, 2] > pixels[40, 40, 0] + 40
    assert pixels[400:].std() > 20


@pytest.mark.slow
def test_report_is_self_contained_and_shows_the_runs_figures(report, demo_folder):
    page = report.read_text()
    dom = parse(page)
    assert dom.sections == ["data", "training", "results", "recordings", "cv", "parity", "footprint", "stream",
                            "integrity", "dsp"]
    # Self-contained: images are data URIs, no script, no external resource of any kind.
    assert all(img["src"].startswith("data:image/png;base64,") for img in dom.images)
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page, re.I)
    assert "url(" not in page and "@import" not in page
    # The run's PNGs are embedded byte for byte.
    for name in ("training_curves.png", "confusion_matrix.png", "example_spectrograms.png"):
        assert base64.b64encode((demo_folder / "run" / name).read_bytes()).decode() in page

    config = json.loads((demo_folder / "run" / "config.json").read_text())
    data = dom.tables["table0"]  # the Windows key/value table comes first
    assert ["windows", f"{config['data']['n_windows']:,}"] in data
    assert ["recordings", str(config["data"]["n_recordings"])] in data

    # Accuracy per recording: every test recording, worst first (lowest accuracy of any column).
    per_rec = dom.tables["per-recording"]
    metrics = json.loads((demo_folder / "run" / "metrics.json").read_text())
    assert {r[0] for r in per_rec[1:]} == {r["recording"] for r in metrics["test"]["per_recording"]}
    worst = [min(float(c) for c in row[3:] if c != "-") for row in per_rec[1:]]
    assert worst == sorted(worst)

    # Footprint: the int8 model against each built-in profile; for cortex-m4 exactly the figures
    # `edgecnn stream --profile cortex-m4` checked before it ran.
    from firmware_sim import profiles

    stream = json.loads((demo_folder / "stream.json").read_text())
    fit_rows = {r[1]: r for r in dom.tables["fit-table"][1:] if r[0] == "model_int8.tflite"}
    assert list(fit_rows) == list(profiles.BUILTIN)
    checked = stream["fit"]
    row = fit_rows[checked["profile"]["name"]]
    assert row[2] == f"{size(checked['flash_needed'])} of {size(checked['profile']['flash_bytes'])}"
    assert row[4] == f"{size(checked['ram_needed'])} of {size(checked['profile']['ram_bytes'])}"
    assert row[5] == f"{100 * checked['ram_needed'] / checked['profile']['ram_bytes']:.1f} %"
    assert row[6] == ("FITS" if checked["fits"] else "DOES NOT FIT")
    assert fit_rows["raspberry-pi-4"][6] == "FITS" and fit_rows["raspberry-pi-4"][3] == "< 0.1 %"

    # The device's buffers and each DSP backend's working memory as tables of named buffers and bytes.
    manifest = json.loads((demo_folder / "bundle" / "manifest.json").read_text())
    buffers = manifest["footprint"]["device_buffers"]
    device_rows = {r[0]: r[1] for r in dom.tables["device-buffers"][1:]}
    assert device_rows["ring buffer"] == f"{buffers['ring_buffer_bytes']:,}"
    assert device_rows["STFT scratch"] == f"{buffers['stft_scratch_bytes']:,}"
    assert device_rows["total (RAM)"] == f"{buffers['total_bytes']:,}"
    working = dom.tables["dsp-working-memory"]
    backends = list(buffers["dsp_working_memory"])
    assert working[0] == ["buffer", "memory", *backends]
    cells = {(row[0], backend): value for row in working[1:] for backend, value in zip(backends, row[2:])}
    for backend, memory in buffers["dsp_working_memory"].items():
        for name, value in memory.items():
            label = " ".join({"fft": "FFT", "ram": "RAM"}.get(word, word) for word in name.split("_"))
            assert cells[label, backend] == f"{value:,}", (label, backend)
    assert {row[1] for row in working[1:]} == {"RAM", "flash"}
    assert "{'" not in page  # no Python dict printed raw anywhere

    # The stream result: its events, one row each.
    events = dom.tables.get("events-table", [[]])[1:]
    assert [r[0] for r in events] == [f"{e['time_s']:.3f}" for e in stream["events"]]
    assert "events-table" in dom.tables or "No state changes." in page


@pytest.mark.slow
def test_report_from_a_run_or_a_bundle_alone(demo_folder, trained_run_dir, tmp_path, capsys):
    out = tmp_path / "run.html"
    assert main(["report", str(trained_run_dir), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    page = out.read_text()
    assert "No parity results" not in page and "edgecnn export RUN_DIR --out BUNDLE" in page
    assert len(parse(page).images) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["run.html"]  # written atomically, nothing left over

    bundle = shutil.copytree(demo_folder / "bundle", tmp_path / "fresh_bundle")  # without its parity results
    out = tmp_path / "bundle.html"
    assert main(["report", str(bundle), "--out", str(out), "--stream-json", str(demo_folder / "stream.json"),
                 "--quiet"]) == 0
    page = out.read_text()
    assert "No parity results beside the bundle" in page and "edgecnn parity BUNDLE --data DATA" in page
    # The bundle's run is found through its manifest; the stream plot beside the JSON is used.
    dom = parse(page)
    assert {img["alt"] for img in dom.images} >= {"training curves", "stream timeline"}
    # A stream result without its --plot PNG: the state timeline is drawn from its events instead.
    lone = shutil.copy(demo_folder / "stream.json", tmp_path / "lone.json")
    inputs = collect(bundle, stream_json=lone)
    assert "stream_timeline" in inputs.images and "stream_plot" not in inputs.images
    assert "Decided state over the stream" in render_html(inputs)


@pytest.mark.slow
def test_report_of_a_bundle_whose_run_is_gone(demo_folder, tmp_path):
    """A bundle on its own (its run left behind on the training machine): every section, from the manifest."""
    bundle = shutil.copytree(demo_folder / "bundle", tmp_path / "shipped" / "bundle")
    shutil.copy(demo_folder / "bundle.parity.json", tmp_path / "shipped")  # parity's results travel beside it
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["training"]["run_path"] = str(tmp_path / "training_machine" / manifest["training"]["run"])
    write_resealed(bundle, manifest)  # an edit, so digest and header follow it
    out = tmp_path / "bundle.html"
    assert main(["report", str(bundle), "--out", str(out), "--quiet"]) == 0
    page = out.read_text()
    dom = parse(page)
    assert dom.sections == [s.id for s in SECTIONS if s.id != "models"]
    # Training: the run's summary the manifest keeps, and a note that the curves live in the run.
    assert ["architecture", manifest["training"]["arch"]] in dom.tables["training-summary"]
    assert "No run directory found; the training curves live there." in page
    assert "No stream result given" in page
    # The data summary the manifest carries, parity from the bundle, the device fit from the manifest.
    data = manifest["training"]["data"]
    assert ["windows", f"{data['n_windows']:,}"] in dom.tables["table0"]
    assert "parity-table" in dom.tables and "fit-table" in dom.tables
    assert {img["alt"] for img in dom.images} == {"parity stream timelines"}


def test_integrity_section_shows_the_digest_and_flags_results_of_another_bundle(tiny_bundle, tmp_path):
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    digest = json.loads((bundle / "manifest.json").read_text())["bundle_digest"]
    (tmp_path / "bundle.parity.json").write_text(json.dumps({"bundle_digest": digest, "model_level": {},
                                                             "gate": {"passed": True, "failures": []}}))
    stream = tmp_path / "stream.json"
    stream.write_text(json.dumps({"timing": {}, "events": [], "decisions": 0, "bundle_digest": "0" * 64}))
    (bundle / "notes.txt").write_text("not listed")
    dom = parse(render_html(collect(bundle, stream_json=stream)))
    identity = dict(map(tuple, dom.tables["identity-table"]))
    assert identity["bundle digest"] == digest
    assert identity["signature"].startswith("unsigned") and identity["not in the manifest (not covered)"] == "notes.txt"
    rows = {row[0]: row[1:] for row in dom.tables["results-digest"][1:]}
    assert rows["parity results"] == [digest, "yes"]
    assert rows["stream result"] == ["0" * 64, "NO: another bundle"]


EVIL = "<script>alert(1)</script>"


def test_user_strings_show_as_text_never_as_markup():
    """Class names, recording ids, label maps, paths: whatever a user's data calls things is text on the page."""
    attribute = '"><img src=x onerror=alert(1)>'
    inputs = ReportInputs(
        title=EVIL, generated="2026-01-01T00:00:00+00:00",
        run_config={"format": "edgecnn-run", "classes": [EVIL, "B&B"], "arch": EVIL, "label_map": f"{EVIL}=A,*=B&B",
                    "data": {"n_windows": 10, "n_recordings": 2, "source": attribute,
                             "windows_per_class": {EVIL: 5, "B&B": 5}}},
        metrics={"test": {"n": 10, "accuracy": 0.5,
                          "per_class": {EVIL: {"precision": 0.5, "recall": 1.0, "support": 5}},
                          "per_recording": [{"recording": EVIL, "class": "B&B", "n": 10, "accuracy": 0.5}]}},
        parity={"classes": [EVIL, "B&B"], "max_drop": 0.01, "min_agreement": 0.98, "data": EVIL,
                "gate": {"passed": False, "failures": [EVIL]},
                "model_level": {"reference": EVIL, "n_windows": 10, "selection": EVIL, "variants": {
                    EVIL: {"runtime": EVIL, "dtype": "float32", "accuracy": 0.5, "ms_per_window": 1.0,
                           "confusion_matrix": [[3, 2], [3, 2]],
                           "vs_reference": {"agreement": 1.0, "max_abs_error": 0.0, "rmse": 0.0,
                                            "cosine_similarity": 1.0}}}},
                "debug_layers": [{"op": EVIL, "tensor": f"{EVIL};{attribute}", "rmse_over_scale": 0.3}]},
        stream={"timing": {"stream_s": 1.0}, "events": [{"time_s": 0.5, "from": EVIL, "to": "B&B"}],
                "decisions": 1, "source": EVIL, "faults": {EVIL: 1}},
        sources={EVIL: attribute})
    page = render_html(inputs)
    dom = parse(page)
    assert "script" not in dom.tags and "img" not in dom.tags  # no markup came from the inputs
    assert "<script" not in page and "<img" not in page
    assert "B&amp;B" in page and "B&B" not in page.replace("B&amp;B", "")
    # ... and each shows as the very text it was, where it belongs.
    assert f"edgecnn report: {EVIL}" in dom.text and f"class {EVIL}" in dom.text  # title, class chips
    assert ["label map", f"{EVIL}=A,*=B&B"] in dom.tables["table0"] and ["source", attribute] in dom.tables["table0"]
    assert [EVIL, "5", "50.0 %"] in dom.tables["table1"]  # windows per class
    assert dom.tables["per-recording"][1][:2] == [EVIL, "B&B"]
    assert dom.tables["parity-table"][1][:2] == [EVIL, EVIL]
    assert dom.tables["layers-table"][1][:2] == [EVIL, f"{EVIL};{attribute}"]
    assert dom.tables["events-table"][1][3] == f"{EVIL} → B&B"
    assert f"{EVIL} 1" in dom.text  # faults
    assert dom.sections[0] == "data" and dom.images == []  # no image inputs, no broken <img>


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does)")
def test_a_class_named_like_a_script_runs_nothing_in_the_browser(tiny_run_dir, tmp_path):
    run = shutil.copytree(tiny_run_dir, tmp_path / "run")
    payload = "<script>document.body.setAttribute('data-pwned', 'script')</script>"
    config = json.loads((run / "config.json").read_text())
    config["classes"] = [payload, "B&B"]
    config["label_map"] = f"{payload}=A,*=B&B"
    config["data"]["source"] = "\"><img src=x onerror=\"document.body.setAttribute('data-pwned', 'img')\">"
    (run / "config.json").write_text(json.dumps(config))
    out = tmp_path / "report.html"
    assert main(["report", str(run), "--out", str(out), "--quiet"]) == 0
    proc = _chromium("--virtual-time-budget=5000", "--dump-dom", out.as_uri(), tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = parse(proc.stdout)
    assert "data-pwned" not in dom.body and dom.images == []
    assert f"class {payload}" in dom.text
    assert ["label map", config["label_map"]] in dom.tables["table0"]
    assert ["source", config["data"]["source"]] in dom.tables["table0"]


def test_an_empty_report_says_what_each_section_needs_and_a_section_needs_its_macro(monkeypatch):
    """Every section has its template macro; one without fails by name rather than rendering half a page."""
    from edgecnn.report import render

    inputs = ReportInputs(title="nothing", generated="2026-01-01T00:00:00+00:00")
    page = render_html(inputs)
    dom = parse(page)
    assert dom.sections == [s.id for s in SECTIONS if s.id != "models"]  # "models" only for several bundles
    for section in SECTIONS[1:]:
        missing = section.data(inputs)
        assert isinstance(missing, Missing), section.id
        assert f"{missing.what} {missing.how}" in dom.text
    extra = Section("extra", "Extra", "Extra", lambda inputs: {"figure": 1})
    monkeypatch.setattr(render, "SECTIONS", (*SECTIONS, extra))
    with pytest.raises(EdgeCNNError, match="has no macro section_extra for section 'extra'"):
        render_html(inputs)


def test_state_timeline_plot_colours_each_state_where_it_holds():
    from PIL import Image

    classes = ["A", "B"]
    png = plot_state_timelines([("stream", 60.0, [{"time_s": 30.0, "from": "A", "to": "B"}], "B")], classes)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    row = image[image.shape[0] // 2 + 5]
    blue = (row[:, 2] > row[:, 0] + 60)  # tab:blue, state A
    orange = (row[:, 0] > row[:, 2] + 100)  # tab:orange, state B
    cols_a, cols_b = np.flatnonzero(blue), np.flatnonzero(orange)
    assert cols_a.size > 100 and cols_b.size > 100
    assert cols_a.max() < cols_b.min()  # A before the event, B after it
    assert abs(cols_a.size - cols_b.size) < 0.05 * (cols_a.size + cols_b.size)  # the event at half time


def test_report_errors_are_one_line_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty"), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "holds no edgecnn run directory or bundle" in err and err.count("\n") == 1
    assert main(["report", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()


def test_a_json_that_is_not_a_stream_result_is_refused(tiny_bundle, tmp_path, capsys):
    bogus = tmp_path / "bogus.json"
    bogus.write_text(json.dumps({"hello": 1}))
    assert main(["report", str(tiny_bundle), "--stream-json", str(bogus), "--out", str(tmp_path / "r.html")]) == 2
    assert "not an `edgecnn stream --json` result" in capsys.readouterr().err
    # The tiny fixture run has a config but no metrics, history or plots: the page says what is missing.
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")  # a copy: parity results stay beside the original
    inputs = collect(bundle)
    assert inputs.manifest is not None and inputs.run_config is not None and inputs.metrics is None
    page = render_html(inputs)
    dom = parse(page)
    assert dom.images == [] and "fit-table" in dom.tables
    assert "No per-recording figures found." in page and "No parity results beside the bundle" in page


def test_locate_matches_the_bundles_run_in_a_moved_demo_folder(tiny_run_dir, tiny_bundle, tmp_path):
    demo = tmp_path / "demo_out"
    bundle = shutil.copytree(tiny_bundle, demo / "bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    run_name = manifest["training"]["run"]
    shutil.copytree(tiny_run_dir, demo / "a_first_run")  # another run, found first in name order
    shutil.copytree(tiny_run_dir, demo / "runs" / run_name)
    # As after moving the folder to another machine: the recorded absolute run path is gone.
    manifest["training"]["run_path"] = str(tmp_path / "elsewhere" / run_name)
    write_resealed(bundle, manifest)  # an edit, so digest and header follow it
    (demo / "notes.json").write_text("{}")
    (demo / "stream_result.json").write_text(json.dumps({"timing": {}, "events": [], "decisions": 0}))
    found = locate(demo)
    assert (found.bundle, found.run, found.stream) == (bundle, demo / "runs" / run_name, demo / "stream_result.json")
    assert found.other_bundles == []
    assert collect(demo).title == "demo_out"

    # A second model's bundle (demo --with-seed): both are compared at the top of the page.
    shutil.copytree(tiny_bundle, demo / "bundle_seed")
    inputs = collect(demo)
    assert [r["bundle"] for r in inputs.compared] == ["bundle", "bundle_seed"]
    table = parse(render_html(inputs)).tables["models-compared"]
    assert [row[0] for row in table[1:]] == ["bundle", "bundle_seed"]
    assert table[1][4] == table[2][4] != "-"  # the same int8 model size: the same exported model


@pytest.mark.slow
@pytest.mark.skipif(not (REPO / ".venv-device" / "bin" / "python").exists(),
                    reason=".venv-device is absent: build the device-only environment with `make device-env`")
def test_report_in_the_device_only_environment(demo_folder, tmp_path):
    """Without the train extra (no matplotlib): the whole page, the figures it would draw itself named as absent."""
    out = tmp_path / "device.html"
    proc = subprocess.run([str(REPO / ".venv-device" / "bin" / "python"), "-m", "edgecnn", "report", str(demo_folder),
                           "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=300,
                          env=subprocess_env(), cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = out.read_text()
    dom = parse(page)
    assert dom.sections == ["data", "training", "results", "recordings", "cv", "parity", "footprint", "stream",
                            "integrity", "dsp"]
    assert {img["alt"] for img in dom.images} == {"training curves", "confusion matrix", "example spectrograms",
                                                  "test prediction", "stream timeline"}  # the PNGs on disk
    assert "Parity stream timelines not drawn: matplotlib is not installed here" in dom.text
    assert "parity-table" in dom.tables and "fit-table" in dom.tables


def test_report_imports_no_tensorflow(tiny_bundle, tmp_path):
    """The report reads files; it must stay quick and usable where only the device side is installed."""
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    code = ("import sys; from edgecnn.cli import main; "
            f"code = main(['report', {str(bundle)!r}, '--out', {str(tmp_path / 'r.html')!r}, '--quiet']); "
            "print(code, sorted(m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env=subprocess_env())
    assert proc.stdout.split() == ["0", "[]"], proc.stderr[-2000:]
    assert (tmp_path / "r.html").stat().st_size > 10_000


def test_example_spectrograms_share_one_colour_scale_with_its_colour_bar(monkeypatch, tmp_path):
    """The report's example spectrograms: every panel on one dB scale, read from one colour bar."""
    from edgecnn import dsp, plots_basic, synth
    from edgecnn.config import SpectrogramConfig

    data = synth.generate(n=12, seed=3, n_recordings=4)
    cfg = SpectrogramConfig()  # magnitude: the plot shows it in dB
    images = dsp.features(data["signal"].astype(np.float32), cfg, normalise=False)[..., None]
    labels = data["label"].argmax(axis=1)
    figures = []
    monkeypatch.setattr(plots_basic, "save_figure", lambda fig, path, **kw: figures.append(fig) or path)
    plots_basic.plot_example_spectrograms(images, labels, ["A", "B"], cfg, tmp_path / "examples.png")
    (fig,) = figures
    panels = [ax for ax in fig.axes if ax.images]
    bars = [ax for ax in fig.axes if ax.get_ylabel() == "magnitude (dB)"]
    assert len(panels) == 6 and len(bars) == 1
    limits = {ax.images[0].get_clim() for ax in panels}
    assert len(limits) == 1  # one scale for all panels
    (low, high), = limits
    db = 20 * np.log10(np.maximum(images[..., 0], 1e-9))
    assert db.min() - 1 <= low < high <= db.max() + 1  # within the data (in dB), not a default 0..1
    assert high - low > 20
    assert bars[0].get_ylim() == pytest.approx((low, high))


def test_the_templates_ship_as_package_data():
    """A non-editable install (pip install ., a wheel) carries every template file: pyproject's globs cover them."""
    import tomllib

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    folder = REPO / "edgecnn" / "report"
    shipped = {path for pattern in setuptools["package-data"]["edgecnn.report"] for path in folder.glob(pattern)}
    assert shipped == set((folder / "templates").iterdir()) and shipped
