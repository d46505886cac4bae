"""The HTML report: one self-contained page about a run, its bundle, parity and a stream.

Two halves. :func:`collect` finds and reads what a run directory, a bundle (with the results
``edgecnn parity`` leaves beside it, ``BUNDLE.parity.json``) and an ``edgecnn stream --json`` result
hold; it reads files and never writes any, and plots (in memory) only the figures the run directory
does not already have.
:func:`render_html` is pure: a :class:`ReportInputs` in, one HTML string out, every image a base64
PNG data URI, an inline stylesheet, no external resource and no JavaScript, so the file can be
mailed, archived by CI, or opened offline. Every piece of text from the inputs is HTML-escaped.

No TensorFlow here (the report reads the files training wrote; it never loads a model).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import html
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from edgecnn.errors import InputError

#: Run-directory PNGs (edgecnn/train.py ``_plots``) reused as they are: key -> (file, caption).
RUN_IMAGES = {
    "training_curves": ("training_curves.png", "Loss and accuracy per epoch, training and validation; "
                                               "the dotted line marks the kept epoch."),
    "confusion_matrix": ("confusion_matrix.png", "Test confusion matrix of the trained float model "
                                                 "(rows: true class, columns: predicted)."),
    "example_spectrograms": ("example_spectrograms.png", "Example training spectrograms, one row per class."),
    "test_prediction": ("test_prediction.png", "One test window's model input beside its predicted "
                                               "class probabilities."),
}
PARITY_FILE = "parity.json"


@dataclasses.dataclass
class ReportInputs:
    """Everything the page shows, already read from disk (any part may be missing: None or empty)."""

    title: str
    """Header title: the bundle's (or run's) folder name."""
    generated: str
    """When the report was made (ISO 8601, UTC)."""
    run_config: dict | None = None
    """The run's ``config.json``."""
    metrics: dict | None = None
    """The run's ``metrics.json`` (test classification report)."""
    history: dict | None = None
    """The run's ``history.json``."""
    split: dict | None = None
    """The run's ``split.json``."""
    manifest: dict | None = None
    """The bundle's ``manifest.json``."""
    parity: dict | None = None
    """The bundle's parity results (``edgecnn parity``, ``BUNDLE.parity.json``)."""
    stream: dict | None = None
    """What ``edgecnn stream --json`` wrote."""
    fits: list[dict] = dataclasses.field(default_factory=list)
    """Fit checks against device profiles: ``{"model": file, **FitReport.to_json()}``."""
    images: dict[str, bytes] = dataclasses.field(default_factory=dict)
    """PNG bytes by key: RUN_IMAGES keys, ``stream_plot``, ``stream_timeline``, ``parity_timelines``."""
    sources: dict[str, str] = dataclasses.field(default_factory=dict)
    """What was read, for the footer: role -> path."""
    compared: list[dict] = dataclasses.field(default_factory=list)
    """One row per bundle of a demo folder holding several (``model_row``); empty otherwise."""


# --- reading -----------------------------------------------------------------------------------------
def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read JSON ({exc})") from None


def _kind(path: Path) -> str | None:
    """``run``, ``bundle`` or None for a folder, from its config.json / manifest.json format."""
    for name, fmt, kind in (("manifest.json", "edgecnn-bundle", "bundle"), ("config.json", "edgecnn-run", "run")):
        candidate = path / name
        if candidate.is_file():
            try:
                doc = json.loads(candidate.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(doc, dict) and doc.get("format") == fmt:
                return kind
    return None


def _is_stream_result(doc: Any) -> bool:
    return isinstance(doc, dict) and {"timing", "events", "decisions"} <= set(doc)


@dataclasses.dataclass
class Located:
    """What a path given to ``edgecnn report`` stands for (None where absent)."""

    run: Path | None = None
    bundle: Path | None = None
    stream: Path | None = None
    other_bundles: list[Path] = dataclasses.field(default_factory=list)
    """Further bundles of a folder holding several (``edgecnn demo --with-seed``), in name order."""


def locate(path: str | Path) -> Located:
    """The run directory, bundle and stream result a path stands for.

    ``path`` is a run directory, a bundle (its run found through the manifest's ``training.run_path``
    when that folder still exists) or a folder holding them (``edgecnn demo --out DIR``): there, its
    sub-folders are searched two levels deep, the first bundle in name order is the one described,
    its own run is preferred (by ``run_path``, else by the run folder's name), and a top-level JSON
    file with ``edgecnn stream --json``'s keys is taken as the stream result.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: not a folder; give a run directory, a bundle or a demo output folder")
    found = Located()
    kind = _kind(path)
    runs: list[Path] = []
    if kind is not None:
        setattr(found, kind, path)
    else:
        subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        subdirs += sorted(q for p in subdirs for q in p.iterdir() if q.is_dir() and not q.name.startswith("."))
        runs = [p for p in subdirs if _kind(p) == "run"]
        bundles = [p for p in subdirs if _kind(p) == "bundle"]
        if not runs and not bundles:
            raise InputError(f"{path}: holds no edgecnn run directory or bundle (looked two folders deep); "
                             "give the folder `edgecnn train --out` or `edgecnn export --out` wrote")
        found.run = runs[0] if runs else None
        if bundles:
            found.bundle, found.other_bundles = bundles[0], bundles[1:]
        for candidate in sorted(path.glob("*.json")):
            try:
                doc = json.loads(candidate.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            if _is_stream_result(doc):
                found.stream = candidate
                break
    if found.bundle is not None:
        training = _read_json(found.bundle / "manifest.json").get("training") or {}
        own = training.get("run_path")
        if own and _kind(Path(own)) == "run":
            found.run = Path(own)
        elif training.get("run"):
            # In a moved demo folder run_path is stale: match the run by its folder name.
            same_name = [p for p in runs if p.name == training["run"]]
            if same_name:
                found.run = same_name[0]
    return found


def fit_checks(manifest: dict) -> list[dict]:
    """Each TFLite model of a bundle (the files a device runs) against every built-in device profile.

    The same figures ``edgecnn stream --profile`` checks: flash = the model file plus the declared DSP
    backend's constant tables; RAM = the tensor arena plus the streaming runtime's buffers for
    256-sample blocks with that backend.
    """
    from edgecnn.config import SpectrogramConfig
    from firmware_sim import profiles
    from firmware_sim.dsp_backends import DeviceDSP

    cfg = SpectrogramConfig.from_dict(manifest["dsp"])
    dsp = DeviceDSP.resolve(manifest.get("device")).name
    footprint = manifest.get("footprint") or {}
    out = []
    for file, entry in (manifest.get("models") or {}).items():
        if entry.get("format") != "tflite" or entry.get("dtype") not in ("int8", "float32"):
            continue
        arena = entry.get("arena_bytes") or (footprint.get("arena_bytes_tflm") if entry["dtype"] == "int8" else None)
        if not arena:
            continue
        itemsize = 1 if (entry.get("input") or {}).get("dtype") in ("int8", "uint8") else 4
        buffers = profiles.runtime_buffer_bytes(cfg, block=256, input_itemsize=itemsize, dsp=dsp,
                                                n_classes=len(manifest.get("classes") or [0, 0]))
        for profile in profiles.BUILTIN.values():
            report = profiles.check_fit(profile, flash_bytes=entry["bytes"], arena_bytes=arena, buffers=buffers,
                                        tables=profiles.dsp_flash_bytes(cfg, dsp))
            out.append({"model": file, "dsp": dsp, **report.to_json()})
    return out


def collect(path: str | Path, *, stream_json: str | Path | None = None,
            stream_plot: str | Path | None = None, now: _dt.datetime | None = None) -> ReportInputs:
    """Read a run / bundle / demo folder (and optionally a stream result and its plot) for the report."""
    found = locate(path)
    if stream_json is not None:
        found.stream = Path(stream_json)
    if stream_plot is not None and found.stream is None:
        raise InputError("--stream-plot needs the stream's JSON too (--stream-json)")
    now = now or _dt.datetime.now(_dt.timezone.utc)
    # A demo folder is named after the whole job; a bundle or run stands for itself.
    named = Path(path) if _kind(Path(path)) is None else (found.bundle or found.run)
    inputs = ReportInputs(title=Path(named).resolve().name, generated=now.replace(microsecond=0).isoformat())
    if found.run is not None:
        _read_run(inputs, found.run)
    if found.bundle is not None:
        _read_bundle(inputs, found.bundle, found.other_bundles)
    if found.stream is not None:
        _read_stream(inputs, found.stream, Path(stream_plot) if stream_plot is not None else None)
    _plot_missing(inputs)
    return inputs


def _read_run(inputs: ReportInputs, run: Path) -> None:
    inputs.sources["run directory"] = str(run.resolve())
    inputs.run_config = _read_json(run / "config.json")
    for attr, name in (("metrics", "metrics.json"), ("history", "history.json"), ("split", "split.json")):
        if (run / name).is_file():
            setattr(inputs, attr, _read_json(run / name))
    for key, (name, _caption) in RUN_IMAGES.items():
        if (run / name).is_file():
            inputs.images[key] = (run / name).read_bytes()


def _read_bundle(inputs: ReportInputs, bundle: Path, others: list[Path]) -> None:
    from export.bundle import load_bundle

    inputs.manifest = load_bundle(bundle).manifest  # verified (schema, hashes): the page describes a sound bundle
    inputs.sources["bundle"] = str(bundle.resolve())
    parity_file = _parity_file(bundle)
    if parity_file is not None:
        inputs.parity = _read_json(parity_file)
        inputs.sources["parity"] = str(parity_file.resolve())
    inputs.fits = fit_checks(inputs.manifest)
    if others:
        inputs.compared = [model_row(bundle, inputs.manifest, inputs.parity, inputs.fits)]
    for other in others:
        manifest = load_bundle(other).manifest
        parity = _read_json(_parity_file(other)) if _parity_file(other) is not None else None
        inputs.compared.append(model_row(other, manifest, parity, fit_checks(manifest)))
        inputs.sources[f"bundle {other.name}"] = str(other.resolve())


def _parity_file(bundle: Path) -> Path | None:
    """``edgecnn parity``'s results: beside the bundle (``BUNDLE.parity.json``), or inside it where an
    older edgecnn wrote them."""
    from export.bundle import parity_results_path

    for path in (parity_results_path(bundle), bundle / PARITY_FILE):
        if path.is_file():
            return path
    return None


def _read_stream(inputs: ReportInputs, stream: Path, plot: Path | None) -> None:
    doc = _read_json(stream)
    if not _is_stream_result(doc):
        raise InputError(f"{stream}: not an `edgecnn stream --json` result (needs timing, events, decisions)")
    inputs.stream = doc
    inputs.sources["stream result"] = str(stream.resolve())
    if plot is not None and not plot.is_file():
        raise InputError(f"--stream-plot {plot}: no such file")
    plot = plot or stream.with_suffix(".png")
    if plot.is_file():
        inputs.images["stream_plot"] = plot.read_bytes()
        inputs.sources["stream plot"] = str(plot.resolve())


def _plot_missing(inputs: ReportInputs) -> None:
    """Plot (in memory) the timelines no PNG on disk shows: the stream without --plot, parity's streams."""
    classes = _classes(inputs)
    if not classes:
        return
    if inputs.stream is not None and "stream_plot" not in inputs.images:
        duration = (inputs.stream.get("timing") or {}).get("stream_s") or 0.0
        inputs.images["stream_timeline"] = plot_state_timelines(
            [("stream", duration, inputs.stream.get("events") or [], inputs.stream.get("state"))], classes)
    streams = ((inputs.parity or {}).get("stream_level") or {}).get("streams") or []
    if streams:
        rows = [(f"{i + 1}: {dtype}", s.get("seconds") or 0.0, v.get("events") or [], None)
                for i, s in enumerate(streams) for dtype, v in (s.get("variants") or {}).items()]
        inputs.images["parity_timelines"] = plot_state_timelines(rows, classes)


def model_row(bundle: Path, manifest: dict, parity: dict | None, fits: list[dict]) -> dict:
    """One bundle's headline figures, for comparing the models of a demo folder side by side."""
    file, entry = _int8_entry(manifest)
    training = manifest.get("training") or {}
    model = (parity or {}).get("model_level") or {}
    variants = model.get("variants") or {}
    int8 = variants.get("tflite_int8/litert") or {}
    return {"bundle": bundle.name, "arch": training.get("arch"),
            "parameters": (entry or {}).get("parameters"), "macs": (entry or {}).get("macs"),
            "int8_bytes": (entry or {}).get("bytes"),
            "arena": (entry or {}).get("arena_bytes") or (manifest.get("footprint") or {}).get("arena_bytes_tflm"),
            "float_accuracy": (variants.get(model.get("reference")) or {}).get("accuracy"),
            "int8_accuracy": int8.get("accuracy"), "agreement": (int8.get("vs_reference") or {}).get("agreement"),
            "gate": ((parity or {}).get("gate") or {}).get("passed"),
            "fits": [f["profile"]["name"] for f in fits if f["model"] == file and f["fits"]]}


def _classes(inputs: ReportInputs) -> list[str]:
    for doc in (inputs.manifest, inputs.run_config, inputs.parity):
        if doc and isinstance(doc.get("classes"), list):
            return [str(c) for c in doc["classes"]]
    return []


def plot_state_timelines(rows: Sequence[tuple[str, float, list[dict], str | None]], classes: list[str]) -> bytes:
    """PNG bytes: one horizontal band per row, coloured by the decided state over stream time.

    A row is (label, duration s, events as ``Event.to_json()``, final state or None). The state before
    the first event is that event's ``from`` (else the final state, else the first class).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(10, 0.4 * len(rows) + 1.2), constrained_layout=True)
    for y, (_label, duration, events, final) in enumerate(rows):
        state = events[0]["from"] if events else (final or classes[0])
        t = 0.0
        for event in [*events, None]:
            end = duration if event is None else float(event["time_s"])
            if state in classes:
                ax.barh(y, max(0.0, end - t), left=t, height=0.6, color=colours(classes.index(state) % 10))
            if event is not None:
                ax.plot([end, end], [y - 0.4, y + 0.4], color="black", lw=1.2)
                t, state = end, event["to"]
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("stream time (s)")
    ax.set_xlim(0, max([r[1] for r in rows] + [1e-9]))
    ax.legend(handles=[Patch(color=colours(i % 10), label=f"state {c}") for i, c in enumerate(classes)],
              loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(classes), frameon=False, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()


# --- rendering (pure) ---------------------------------------------------------------------------------
class Html(str):
    """Markup already escaped; everything else is escaped when placed into the page."""


def esc(value: Any) -> Html:
    return value if isinstance(value, Html) else Html(html.escape("" if value is None else str(value)))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def num(value: Any, digits: int = 4) -> str:
    """A figure as text: integers with thousands separators, floats with ``digits`` decimals, '-' for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def size(n: Any) -> str:
    if not _is_number(n):
        return "-"
    for unit, factor in (("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= factor:
            return f"{n / factor:,.1f} {unit}"
    return f"{int(n):,} B"


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count:,} {word if count == 1 else (words or word + 's')}"


def pct(value: Any, digits: int = 1) -> str:
    if not _is_number(value):
        return "-"
    if 0 < value < 10 ** -(digits + 2):
        return f"< {10 ** -digits:g} %"
    return f"{100 * value:.{digits}f} %"


class Cell:
    """A table cell with its own class (e.g. ``num``) and optional inline bar (0..1)."""

    def __init__(self, content: Any, cls: str = "", bar: float | None = None, title: str | None = None):
        self.content, self.cls, self.bar, self.title = content, cls, bar, title


def N(value: Any, digits: int = 4, bar: float | None = None) -> Cell:  # noqa: N802 (reads like a tag)
    """A right-aligned number cell."""
    return Cell(num(value, digits) if not isinstance(value, (str, Html)) else value, "num", bar)


def table(headers: Sequence[Any], rows: Iterable[Sequence[Any]], *, id: str | None = None,  # noqa: A002
          cls: str = "") -> Html:
    """A table; header cells right-aligned where the column's first row is a number cell."""
    rows = list(rows)
    numeric = [bool(rows) and isinstance(c, Cell) and "num" in c.cls for c in (rows[0] if rows else [])]
    head = "".join(f'<th{" class=num" if i < len(numeric) and numeric[i] else ""}>{esc(h)}</th>'
                   for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for cell in row:
            if not isinstance(cell, Cell):
                cell = Cell(cell)
            attrs = f' class="{cell.cls}"' if cell.cls else ""
            if cell.title:
                attrs += f' title="{esc(cell.title)}"'
            inner = esc(cell.content)
            if cell.bar is not None and math.isfinite(cell.bar):
                width = max(0.0, min(1.0, cell.bar)) * 100
                inner = Html(f'<span class="bar" style="width:{width:.1f}%"></span><span class="v">{inner}</span>')
            cells.append(f"<td{attrs}>{inner}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    ident = f' id="{esc(id)}"' if id else ""
    return Html(f'<div class="scroll"><table{ident} class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>'
                + "".join(body) + "</tbody></table></div>")


def kv(pairs: Iterable[tuple[Any, Any]]) -> Html:
    """A two-column key/value table (values right-aligned when they are numbers)."""
    rows = "".join(f'<tr><th>{esc(k)}</th><td{" class=num" if _looks_numeric(v) else ""}>{esc(v)}</td></tr>'
                   for k, v in pairs)
    return Html(f'<table class="kv"><tbody>{rows}</tbody></table>')


def _looks_numeric(value: Any) -> bool:
    """Figures (``1,234``, ``-0.5``, ``12.3 %``, ``3 / 4 B``) right-align; names and paths do not."""
    return not isinstance(value, Html) and bool(_NUMERIC.match(str(value)))


_NUMERIC = re.compile(r"^[-+<]?\s?\d[\d,.]*(\s?(/|of|x|%|B|KiB|MiB|MB|\(|×)|$)")


def figure(png: bytes | None, alt: str, caption: str = "", *, wide: bool = True) -> Html:
    if not png:
        return Html("")
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return Html(f'<figure class="{"wide" if wide else "narrow"}"><img alt="{esc(alt)}" '
                f'src="data:image/png;base64,{data}">{cap}</figure>')


def section(ident: str, title: str, *parts: Any) -> Html:
    body = "".join(esc(p) for p in parts if p)
    return Html(f'<section id="{esc(ident)}"><h2>{esc(title)}</h2>{body}</section>')


def para(text: Any, cls: str = "") -> Html:
    return Html(f'<p{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>{esc(text)}</p>')


def missing(what: str, how: str) -> Html:
    return Html(f'<p class="missing">{esc(what)} <code>{esc(how)}</code></p>')


def badge(ok: bool | None, yes: str = "PASSED", no: str = "FAILED") -> Html:
    if ok is None:
        return Html('<span class="badge na">n/a</span>')
    return Html(f'<span class="badge {"ok" if ok else "bad"}">{esc(yes if ok else no)}</span>')


STYLE = """
:root{--fg:#1d2330;--muted:#5f6b7a;--line:#dfe3ea;--bg:#f5f7fa;--card:#fff;--accent:#2f6fdb;
--ok:#1f8a4c;--okbg:#e4f5eb;--bad:#c0392b;--badbg:#fbe7e5;--bar:#d6e4fb}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
header{background:linear-gradient(120deg,#16325c,#2f6fdb);color:#fff;padding:28px 0 22px}
.wrap{max-width:1120px;margin:0 auto;padding:0 24px}
header h1{margin:0 0 4px;font-size:26px;font-weight:650;letter-spacing:-.01em}
header .sub{opacity:.88;font-size:14px}
header .chips{margin-top:10px}
.chip{display:inline-block;background:rgba(255,255,255,.16);border:1px solid rgba(255,255,255,.3);
border-radius:999px;padding:1px 10px;margin:0 6px 4px 0;font-size:12.5px}
header .versions{margin-top:8px;font-size:12px;opacity:.8}
nav{background:#fff;border-bottom:1px solid var(--line);position:sticky;top:0;z-index:2}
nav a{display:inline-block;padding:9px 10px;color:var(--muted);text-decoration:none;font-size:13px}
nav a:hover{color:var(--accent)}
main{padding:18px 0 40px}
section{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:6px 22px 18px;
margin:18px 0;box-shadow:0 1px 2px rgba(20,30,50,.04)}
h2{font-size:19px;margin:16px 0 10px;padding-bottom:6px;border-bottom:1px solid var(--line)}
h3{font-size:15px;margin:18px 0 8px;color:#2a3443}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(132px,1fr));gap:12px;margin:18px 0 0}
.card{background:#fff;border:1px solid var(--line);border-radius:10px;padding:12px 14px}
.card .k{color:var(--muted);font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:21px;white-space:nowrap;font-weight:650;font-variant-numeric:tabular-nums;margin-top:2px}
.card .d{color:var(--muted);font-size:12px}
.card.ok{border-color:#b8e2c8;background:var(--okbg)}.card.bad{border-color:#f0c2bc;background:var(--badbg)}
table{border-collapse:collapse;margin:8px 0 12px;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:5px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
thead th{background:#f0f3f8;font-weight:600;color:#2a3443;border-bottom:2px solid var(--line);white-space:nowrap}
tbody tr:nth-child(even) td{background:#fafbfd}
td.num,th.num{text-align:right;white-space:nowrap}
td.ref{font-weight:600}
td.pos{color:var(--bad)}td.good{color:var(--ok)}
table.kv th{background:none;font-weight:500;color:var(--muted);border-bottom:1px solid var(--line);
padding-right:24px;min-width:9em}
table.kv td{overflow-wrap:anywhere}
td{position:relative}
.bar{position:absolute;left:0;bottom:1px;height:4px;background:#8fb3f0;border-radius:2px;z-index:0}
td .v{position:relative;z-index:1}
table.cm td.num{min-width:56px;text-align:center}
table.cm th.corner{background:none;border:none;color:var(--muted);font-weight:400}
.grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(min(100%,420px),1fr));gap:8px 26px;align-items:start}
.grid>div,.grid>figure{min-width:0}
.scroll{overflow-x:auto}
figure{margin:10px 0 14px}
figure img{max-width:100%;height:auto;border:1px solid var(--line);border-radius:6px;background:#fff}
figure.narrow img{max-width:min(100%,520px)}
figcaption{color:var(--muted);font-size:12.5px;margin-top:4px}
.badge{display:inline-block;border-radius:5px;padding:1px 8px;font-weight:700;font-size:12px;letter-spacing:.04em}
.badge.ok{background:var(--okbg);color:var(--ok);border:1px solid #b8e2c8}
.badge.bad{background:var(--badbg);color:var(--bad);border:1px solid #f0c2bc}
.badge.na{background:#eef0f4;color:var(--muted)}
.gate{font-size:15px;margin:12px 0}
.failures{color:var(--bad);margin:6px 0 12px}
.missing{color:var(--muted);font-style:italic}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;background:#f0f3f8;
padding:1px 4px;border-radius:4px}
.muted{color:var(--muted)}
footer{color:var(--muted);font-size:12px;padding:0 0 30px}
footer td,footer th{font-size:12px}
@media print{nav{display:none}section{break-inside:avoid;box-shadow:none}}
"""


def _manifest_training(inputs: ReportInputs) -> dict:
    return (inputs.manifest or {}).get("training") or {}


def _data_summary(inputs: ReportInputs) -> dict:
    return (inputs.run_config or {}).get("data") or _manifest_training(inputs).get("data") or {}


def _dsp(inputs: ReportInputs) -> dict | None:
    return (inputs.manifest or {}).get("dsp") or (inputs.run_config or {}).get("dsp")


def _int8_entry(manifest: dict | None) -> tuple[str, dict] | tuple[None, None]:
    for file, entry in ((manifest or {}).get("models") or {}).items():
        if entry.get("format") == "tflite" and entry.get("dtype") == "int8":
            return file, entry
    return None, None


def _header(inputs: ReportInputs, classes: list[str]) -> Html:
    manifest, run = inputs.manifest or {}, inputs.run_config or {}
    arch = run.get("arch") or _manifest_training(inputs).get("arch")
    sub = [f"{'bundle' if inputs.manifest else 'run'} report"]
    if arch:
        sub.append(f"{arch} model")
    if manifest.get("created"):
        sub.append(f"exported {manifest['created']}")
    sub.append(f"report generated {inputs.generated}")
    chips = "".join(f'<span class="chip">class {esc(c)}</span>' for c in classes)
    versions = manifest.get("tool_versions") or run.get("tool_versions") or {}
    vtext = " · ".join(f"{k} {v}" for k, v in versions.items())
    return Html(f'<header><div class="wrap"><h1>edgecnn report: {esc(inputs.title)}</h1>'
                f'<div class="sub">{esc(" · ".join(sub))}</div><div class="chips">{chips}</div>'
                f'<div class="versions">{esc(vtext)}</div></div></header>')


def _card(key: str, value: str, detail: str = "", state: str = "") -> str:
    return (f'<div class="card {state}"><div class="k">{esc(key)}</div><div class="v">{esc(value)}</div>'
            f'<div class="d">{esc(detail)}</div></div>')


def _cards(inputs: ReportInputs) -> Html:
    cards = []
    test = (inputs.metrics or {}).get("test") or {}
    if test.get("accuracy") is not None:
        cards.append(_card("float accuracy", pct(test["accuracy"], 2), f"{num(test.get('n'))} test windows"))
    model = (inputs.parity or {}).get("model_level") or {}
    variants = model.get("variants") or {}
    int8 = variants.get("tflite_int8/litert") or next((v for v in variants.values() if v.get("dtype") == "int8"), None)
    if int8 is not None:
        ref = variants.get(model.get("reference"), {}).get("accuracy")
        drop = (ref - int8["accuracy"]) if _is_number(ref) and _is_number(int8.get("accuracy")) else None
        change = ("" if drop is None else "same as float" if abs(drop) < 5e-5
                  else f"{-100 * drop:+.2f} points vs float")
        cards.append(_card("int8 accuracy", pct(int8.get("accuracy"), 2), change))
    gate = (inputs.parity or {}).get("gate")
    if gate is not None:
        cards.append(_card("parity gate", "PASSED" if gate.get("passed") else "FAILED",
                           f"max drop {num((inputs.parity or {}).get('max_drop'), 3)}",
                           "ok" if gate.get("passed") else "bad"))
    file, entry = _int8_entry(inputs.manifest)
    if entry is not None:
        cards.append(_card("int8 model", size(entry.get("bytes")), f"{num(entry.get('parameters'))} parameters"))
        arena = entry.get("arena_bytes") or ((inputs.manifest or {}).get("footprint") or {}).get("arena_bytes_tflm")
        if arena:
            cards.append(_card("tensor arena", size(arena), "tflite-micro, measured"))
    int8_fits = [f for f in inputs.fits if f["model"] == file]
    if int8_fits:
        fitting = [f["profile"]["name"] for f in int8_fits if f["fits"]]
        cards.append(_card("int8 fits", f"{len(fitting)} of {len(int8_fits)}", ", ".join(fitting) or "no profile",
                           "ok" if fitting else "bad"))
    timing = (inputs.stream or {}).get("timing") or {}
    if timing.get("realtime_factor") is not None:
        n_events = len((inputs.stream or {}).get("events") or [])
        cards.append(_card("stream", f"{timing['realtime_factor']:.0f}x",
                           f"real time; {plural(n_events, 'event')}, "
                           f"{plural(timing.get('deadline_misses') or 0, 'deadline miss', 'deadline misses')}"))
    return Html(f'<div class="cards">{"".join(cards)}</div>') if cards else Html("")


def _compared_section(inputs: ReportInputs) -> Html:
    if not inputs.compared:
        return Html("")
    rows = [[Cell(r["bundle"], "ref" if i == 0 else ""), r.get("arch") or "-", N(r.get("parameters")),
             N(r.get("macs")), N(size(r.get("int8_bytes"))), N(size(r.get("arena"))), N(r.get("float_accuracy")),
             N(r.get("int8_accuracy")), badge(r.get("gate")), ", ".join(r.get("fits") or []) or "none"]
            for i, r in enumerate(inputs.compared)]
    return section("models", "Models in this folder",
                   para(f"The rest of this page describes {inputs.compared[0]['bundle']}; accuracy is on each "
                        "bundle's parity windows (float: the parity reference; int8: tflite_int8/litert).", "muted"),
                   table(["bundle", "arch", "parameters", "MACs", "int8 model", "arena", "float accuracy",
                          "int8 accuracy", "gate", "int8 fits on"], rows, id="models-compared"))


def _data_section(inputs: ReportInputs) -> Html:
    data = _data_summary(inputs)
    if not data and not inputs.split:
        return section("data", "Data", missing("No data summary: the run directory was not found.",
                                               "edgecnn report RUN_DIR"))
    per_class = data.get("windows_per_class") or {}
    n = data.get("n_windows")
    class_table = table(["class", "windows", "share"],
                        [[c, N(v), N(pct(v / n) if n else "-", bar=v / n if n else None)]
                         for c, v in per_class.items()]) if per_class else Html("")
    dropped = data.get("dropped") or {}
    pairs = [("source", data.get("source") or "-"), ("windows", num(n)),
             ("recordings", num(data.get("n_recordings") or data.get("recordings"))),
             ("classes", ", ".join(str(c) for c in data.get("classes") or [])),
             ("recordings left out: not in the label map", num(dropped.get("unmapped", 0))),
             ("recordings left out: shorter than a window", num(dropped.get("too_short", 0)))]
    label_map = (inputs.run_config or {}).get("label_map") or _manifest_training(inputs).get("label_map")
    if label_map:
        pairs.append(("label map", label_map))
    split = inputs.split or {}
    split_table = Html("")
    if split:
        windows = split.get("windows") or {}
        split_table = table(["part", "recordings", "windows"],
                            [[part, N(len(split.get(part) or [])), N(windows.get(part))]
                             for part in ("train", "validation", "test")])
        split_table = Html(split_table + para(f"Split by recording (seed {split.get('seed')}); validation: "
                                              f"{split.get('validation_rule', '-')}.", "muted"))
    calib = (inputs.manifest or {}).get("calibration") or {}
    calib_text = (para(f"int8 calibration: {calib.get('windows')} training windows "
                       f"({', '.join(f'{k} {v}' for k, v in (calib.get('per_class') or {}).items())}), "
                       f"seed {calib.get('seed')}.", "muted") if calib else Html(""))
    grid = Html(f'<div class="grid"><div><h3>Windows</h3>{kv(pairs)}</div><div><h3>Classes</h3>{class_table}'
                f'<h3>Split</h3>{split_table or para("-")}{calib_text}</div></div>')
    return section("data", "Data", grid,
                   figure(inputs.images.get("example_spectrograms"), "example spectrograms",
                          RUN_IMAGES["example_spectrograms"][1]))


def _training_section(inputs: ReportInputs) -> Html:
    run, history, metrics = inputs.run_config or {}, inputs.history or {}, inputs.metrics or {}
    if not run:
        return section("training", "Training", missing("No run directory found; the training curves live there.",
                                                       "edgecnn report RUN_DIR"))
    training = run.get("training") or {}
    footprint = run.get("footprint") or {}
    epochs_run = len(history.get("loss") or [])
    pairs = [("architecture", run.get("arch") or "-"), ("parameters", num(footprint.get("params"))),
             ("MACs per inference", num(footprint.get("macs"))),
             ("epochs run / maximum", f"{epochs_run} / {training.get('epochs', '-')}"),
             ("kept epoch", num(history.get("best_epoch"))),
             ("seconds per epoch", num(history.get("seconds_per_epoch") or metrics.get("seconds_per_epoch"), 2)),
             ("batch size", num(training.get("batch_size"))), ("learning rate", num(training.get("learning_rate"), 4)),
             ("normalisation", training.get("normalisation") or "-"),
             ("devices", ", ".join(training.get("devices") or []) or "-"),
             ("validation accuracy", num(metrics.get("validation_accuracy")))]
    return section("training", "Training", kv(pairs),
                   figure(inputs.images.get("training_curves"), "training curves", RUN_IMAGES["training_curves"][1]))


def confusion_table(matrix: Sequence[Sequence[int]], classes: list[str]) -> Html:
    """Counts with row-share shading (rows true class, columns predicted)."""
    head = '<tr><th class="corner">true \\ predicted</th>' + "".join(f"<th class=num>{esc(c)}</th>"
                                                                      for c in classes) + "</tr>"
    rows = []
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        cells = []
        for j, count in enumerate(row):
            share = count / total
            colour = (f"rgba(31,138,76,{0.12 + 0.55 * share:.2f})" if i == j
                      else f"rgba(192,57,43,{0.55 * share:.2f})")
            cells.append(f'<td class="num" style="background:{colour}">{count:,}</td>')
        rows.append(f"<tr><th>{esc(classes[i] if i < len(classes) else i)}</th>{''.join(cells)}</tr>")
    return Html(f'<table class="cm"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>')


def _results_section(inputs: ReportInputs, classes: list[str]) -> Html:
    test = (inputs.metrics or {}).get("test") or {}
    parts: list[Any] = []
    if test:
        per_class = test.get("per_class") or {}
        parts.append(para(f"The trained float model on {num(test.get('n'))} windows of the test recordings: "
                          f"accuracy {num(test.get('accuracy'))}."))
        parts.append(table(["class", "precision", "recall", "support"],
                           [[c, N(v.get("precision")), N(v.get("recall")), N(v.get("support"))]
                            for c, v in per_class.items()]))
        parts.append(Html('<div class="grid">' + figure(inputs.images.get("confusion_matrix"), "confusion matrix",
                                                         RUN_IMAGES["confusion_matrix"][1], wide=False)
                          + figure(inputs.images.get("test_prediction"), "test prediction",
                                   RUN_IMAGES["test_prediction"][1], wide=False) + "</div>"))
    model = (inputs.parity or {}).get("model_level") or {}
    variants = model.get("variants") or {}
    shown = [n for n, v in variants.items() if n == model.get("reference") or v.get("dtype") == "int8"]
    if shown:
        parts.append(Html("<h3>Confusion matrices per deployed format</h3>"))
        parts.append(para(f"On the parity windows ({model.get('selection', '-')}).", "muted"))
        cells = "".join(f"<div><h3>{esc(n)}</h3>{confusion_table(variants[n]['confusion_matrix'], classes)}</div>"
                        for n in shown if variants[n].get("confusion_matrix"))
        parts.append(Html(f'<div class="grid">{cells}</div>'))
    if not parts:
        parts.append(missing("No test results: neither a run directory nor a parity result was found.",
                             "edgecnn parity BUNDLE --data DATA"))
    return section("results", "Test results", *parts)


def _recordings_section(inputs: ReportInputs) -> Html:
    columns: list[tuple[str, dict[str, dict]]] = []
    test = (inputs.metrics or {}).get("test") or {}
    if test.get("per_recording"):
        columns.append(("float (training)", {r["recording"]: r for r in test["per_recording"]}))
    variants = ((inputs.parity or {}).get("model_level") or {}).get("variants") or {}
    for name in ("tflite_int8/litert", "tflite_int8/tflm", "onnx_int8/onnxruntime"):
        if (variants.get(name) or {}).get("per_recording"):
            columns.append((name, {r["recording"]: r for r in variants[name]["per_recording"]}))
    if not columns:
        return section("recordings", "Accuracy per recording",
                       missing("No per-recording figures found.", "edgecnn report RUN_DIR"))
    ids = {rid for _, col in columns for rid in col}
    info = {rid: next(col[rid] for _, col in columns if rid in col) for rid in ids}

    def worst(rid: str) -> tuple:
        accs = [col[rid]["accuracy"] for _, col in columns if rid in col and col[rid].get("accuracy") is not None]
        return (min(accs) if accs else 2.0, rid)

    rows = []
    for rid in sorted(ids, key=worst):
        row = [rid, info[rid].get("class", "-"), N(info[rid].get("n"))]
        for _, col in columns:
            acc = (col.get(rid) or {}).get("accuracy")
            row.append(N(acc, bar=acc if _is_number(acc) else None))
        rows.append(row)
    return section("recordings", "Accuracy per recording",
                   para("Test recordings, worst first (by the lowest accuracy of any column): a recording the "
                        "model fails on stands out here even when the overall accuracy looks fine."),
                   table(["recording", "class", "windows", *[c for c, _ in columns]], rows, id="per-recording"))


def _parity_section(inputs: ReportInputs) -> Html:
    parity = inputs.parity
    if not parity:
        if inputs.manifest:
            note = missing("No parity results beside the bundle (BUNDLE.parity.json); run",
                           "edgecnn parity BUNDLE --data DATA")
        else:
            note = missing("No bundle found, so no parity figures; export one and check it:",
                           "edgecnn export RUN_DIR --out BUNDLE && edgecnn parity BUNDLE --data DATA")
        return section("parity", "Parity: float against int8", note)
    model = parity.get("model_level") or {}
    variants = model.get("variants") or {}
    ref_name = model.get("reference")
    ref_acc = (variants.get(ref_name) or {}).get("accuracy")
    rows = []
    for name, v in variants.items():
        e = v.get("vs_reference") or {}
        drop = ref_acc - v["accuracy"] if _is_number(ref_acc) and _is_number(v.get("accuracy")) else None
        row = [Cell(name, "ref" if name == ref_name else ""), v.get("runtime", "-"), v.get("dtype", "-"),
               N(v.get("accuracy"), bar=v.get("accuracy")), N(drop),
               N(e.get("agreement")), N(e.get("max_abs_error")), N(e.get("rmse")), N(e.get("cosine_similarity")),
               N(v.get("ms_per_window"), 2)]
        if drop is not None and drop > (parity.get("max_drop") or 0) + 1e-12 and v.get("dtype") == "int8":
            row[4].cls += " pos"
        rows.append(row)
    gate = parity.get("gate") or {}
    failures = "".join(f"<li>{esc(f)}</li>" for f in gate.get("failures") or [])
    parts: list[Any] = [
        Html(f'<p class="gate">Gate {badge(gate.get("passed"))} int8 accuracy may drop at most '
             f'{esc(num(parity.get("max_drop"), 3))} below {esc(ref_name)}, and int8 must agree with it on at least '
             f'{esc(num(parity.get("min_agreement"), 3))} of windows (most likely class) and of stream decisions '
             f'(smoothed state).</p>'),
        Html(f'<ul class="failures">{failures}</ul>') if failures else "",
        para(f"Model level: {num(model.get('n_windows'))} windows ({model.get('selection', '-')}); data "
             f"{parity.get('data', '-')}. Reference: {ref_name}. Agreement and errors compare each format's class "
             "probabilities with the reference's on the same windows.", "muted"),
        table(["variant", "runtime", "weights", "accuracy", "drop", "agreement", "max |Δp|", "rmse", "cosine",
               "ms / window"], rows, id="parity-table"),
    ]
    stream = parity.get("stream_level") or {}
    if stream.get("streams"):
        streams, srows = [], []
        for i, s in enumerate(stream["streams"]):
            streams.append([N(i + 1), s.get("description", "-"), N(s.get("seconds"), 1),
                            N(s.get("decision_agreement")), N(s.get("state_agreement")),
                            "yes" if s.get("same_events") else "no"])
            for dtype, m in (s.get("variants") or {}).items():
                delays = ", ".join(f"{d:.2f}" for d in m.get("detection_delay_s") or []) or "-"
                srows.append([N(i + 1), dtype, N(m.get("decisions")), N(m.get("decision_accuracy")),
                              N(m.get("false_alarms")), N(m.get("false_alarms_per_hour"), 1),
                              N(f"{m.get('missed', '-')} of {m.get('class_changes', '-')}"), N(delays),
                              N(m.get("realtime_factor"), 1)])
        parts += [Html("<h3>Stream level</h3>"),
                  para(f"Float and int8 streamed through firmware_sim ({stream.get('runtime', '-')}) over the "
                       "same signals; agreement: decision = same most likely class, state = same smoothed "
                       "state, events = identical event lists.", "muted"),
                  table(["#", "stream", "seconds", "decision agreement", "state agreement", "same events"],
                        streams, id="stream-parity-streams"),
                  table(["#", "model", "decisions", "decision accuracy", "false alarms", "per hour", "missed",
                         "delay (s)", "real-time factor"], srows, id="stream-parity-table"),
                  figure(inputs.images.get("parity_timelines"), "parity stream timelines",
                         "Decided state over each parity stream (#), float32 and int8 (black ticks: events).")]
    layers = parity.get("debug_layers")
    if layers:
        worst = sorted(layers, key=lambda r: -(r.get("rmse_over_scale") or 0))[:10]
        parts += [Html("<h3>Layers with the largest float vs int8 error</h3>"),
                  table(["op", "tensor", "rmse / scale"],
                        [[r.get("op"), r.get("tensor"), N(r.get("rmse_over_scale"), 3)] for r in worst])]
    return section("parity", "Parity: float against int8", *parts)


def _footprint_section(inputs: ReportInputs) -> Html:
    manifest = inputs.manifest
    if not manifest:
        return section("footprint", "Footprint and device fit",
                       missing("No bundle found; export one:", "edgecnn export RUN_DIR --out BUNDLE"))
    models = manifest.get("models") or {}
    mrows = [[file, e.get("format"), e.get("dtype"), N(e.get("bytes")), N(size(e.get("bytes"))),
              N(e.get("parameters")), N(e.get("macs")), N(e.get("arena_bytes"))] for file, e in models.items()]
    fp = manifest.get("footprint") or {}
    frows = []
    for f in inputs.fits:
        p = f["profile"]
        flash_share = f["flash_needed"] / p["flash_bytes"]
        ram_share = f["ram_needed"] / p["ram_bytes"]
        frows.append([f["model"], Cell(p["name"], title=p.get("description") or None),
                      N(f"{size(f['flash_needed'])} of {size(p['flash_bytes'])}"),
                      N(pct(flash_share), bar=flash_share),
                      N(f"{size(f['ram_needed'])} of {size(p['ram_bytes'])}"),
                      N(pct(ram_share), bar=ram_share), badge(f["fits"], "FITS", "DOES NOT FIT")])
    buffers = fp.get("device_buffers") or {}
    pairs = [("flash (int8 model)", f"{num(fp.get('flash_bytes'))} B"),
             ("tensor arena (tflite-micro)", f"{num(fp.get('arena_bytes_tflm'))} B"),
             ("arena head / tail", f"{num(fp.get('arena_head_bytes'))} / {num(fp.get('arena_tail_bytes'))} B")]
    pairs += [(f"device buffer: {k.replace('_', ' ')}", num(v)) for k, v in buffers.items()]
    c_array = manifest.get("c_array") or {}
    if c_array:
        pairs.append(("C array", f"{c_array.get('source')} / {c_array.get('header')} "
                                 f"(symbol {c_array.get('symbol')}, {c_array.get('alignment')}-byte aligned)"))
    parts: list[Any] = [
        Html("<h3>Model files</h3>"),
        table(["file", "format", "weights", "bytes", "size", "parameters", "MACs", "arena (B)"], mrows,
              id="models-table"),
        Html("<h3>Against the built-in device profiles</h3>"),
        para("RAM needed = the tensor arena tflite-micro measured plus the streaming runtime's own buffers "
             "(DMA half-buffers, sample history, DSP working memory, rolling image, smoothing) for 256-sample "
             "blocks; flash needed = the model file plus the DSP backend's constant tables. DSP backend: "
             f"{inputs.fits[0]['dsp'] if inputs.fits else '-'} (the bundle's declared device DSP; numpy counts "
             "as the float32 port): the same check as edgecnn stream --profile.", "muted"),
        table(["model", "profile", "flash", "flash used", "RAM", "RAM used", "verdict"], frows, id="fit-table")
        if frows else missing("No TFLite model with a measured arena in this bundle.", "edgecnn inspect BUNDLE"),
        Html("<h3>Footprint figures</h3>"), kv(pairs)]
    if fp.get("arena_note"):
        parts.append(para(fp["arena_note"], "muted"))
    return section("footprint", "Footprint and device fit", *parts)


def _stream_section(inputs: ReportInputs) -> Html:
    stream = inputs.stream
    if not stream:
        return section("stream", "Stream", missing("No stream result given; make one and pass it:",
                                                   "edgecnn stream BUNDLE --json stream.json --plot stream.png; "
                                                   "edgecnn report BUNDLE --stream-json stream.json"))
    t, faults = stream.get("timing") or {}, stream.get("faults") or {}
    pairs = [("source", stream.get("source", "-")), ("model / runtime",
                                                     f"{stream.get('model', '-')} on {stream.get('runtime', '-')}"),
             ("DSP backend", stream.get("dsp", "-")), ("block (samples)", num(stream.get("block"))),
             ("stream length (s)", num(t.get("stream_s"), 2)), ("processing (s)", num(t.get("processing_s"), 3)),
             ("real-time factor", f"{num(t.get('realtime_factor'), 1)}x"), ("CPU load", pct(t.get("cpu_load"), 2)),
             ("block ms p50 / p99 / worst",
              f"{num(t.get('block_ms_p50'), 3)} / {num(t.get('block_ms_p99'), 3)} / {num(t.get('block_ms_worst'), 3)}"),
             ("deadline misses", num(t.get("deadline_misses"))),
             ("decisions (invalid)", f"{num(stream.get('decisions'))} ({num(stream.get('invalid_decisions'))})"),
             ("decision latency ms p50 / worst",
              f"{num(t.get('decision_latency_ms_p50'), 2)} / {num(t.get('decision_latency_ms_worst'), 2)}"),
             ("final state", stream.get("state", "-")),
             ("faults", ", ".join(f"{k} {v}" for k, v in faults.items() if v) or "none")]
    if stream.get("fit"):
        fit = stream["fit"]
        pairs.append((f"checked against {fit['profile']['name']}",
                      f"{'fits' if fit['fits'] else 'does NOT fit'}: flash {size(fit['flash_needed'])}, "
                      f"RAM {size(fit['ram_needed'])}"))
    if stream.get("peak_rss_mb") is not None:
        pairs.append(("peak resident memory", f"{stream['peak_rss_mb']} MB"))
    events = stream.get("events") or []
    erows = [[N(e.get("time_s"), 3), N(e.get("sample_index")), N(e.get("decision")), f"{e.get('from')} → {e.get('to')}",
              N(e.get("p_smoothed"), 3)] for e in events]
    image = inputs.images.get("stream_plot")
    caption = ("Signal envelope, p(class) per decision, smoothed probability and state, events (edgecnn stream --plot)."
               if image else "Decided state over the stream (black ticks: events).")
    events_html = (table(["time (s)", "sample", "decision", "state change", "p smoothed"], erows, id="events-table")
                   if erows else para("No state changes."))
    return section("stream", "Stream",
                   Html(f'<div class="grid"><div><h3>Run</h3>{kv(pairs)}</div>'
                        f'<div><h3>Events</h3>{events_html}</div></div>'),
                   figure(image or inputs.images.get("stream_timeline"), "stream timeline", caption))


def _dsp_section(inputs: ReportInputs) -> Html:
    dsp = _dsp(inputs)
    if not dsp:
        return section("dsp", "DSP configuration", missing("No DSP configuration found.", "edgecnn inspect BUNDLE"))
    from edgecnn.config import SpectrogramConfig

    cfg = SpectrogramConfig.from_dict(dsp)

    def stats(values: tuple) -> str:
        if len(values) == 1:
            return num(float(values[0]), 4)
        return f"{len(values)} values per bin, {min(values):.3f} … {max(values):.3f}"

    window = dsp.get("window")
    pairs = [("sample rate (Hz)", f"{cfg.fs:,g}"), ("samples per window", num(cfg.window_samples)),
             ("window duration (s)", num(cfg.window_duration_s, 4)),
             ("frame (nperseg) / overlap / hop", f"{cfg.nperseg} / {cfg.noverlap} / {cfg.hop}"),
             ("frame period (ms)", num(1000 * cfg.frame_period_s, 3)),
             ("STFT window", " ".join(str(w) for w in window) if isinstance(window, list) else str(window)),
             ("detrend", cfg.detrend), ("image (freq bins × frames)", f"{cfg.n_freq} × {cfg.n_frames}"),
             ("transform", cfg.transform)]
    if cfg.transform == "log":
        pairs.append(("log floor (dB)", num(cfg.log_floor_db, 1)))
    pairs += [("normalisation mean", stats(cfg.norm_mean)), ("normalisation std", stats(cfg.norm_std)),
              ("feature version", num(dsp.get("feature_version")))]
    return section("dsp", "DSP configuration",
                   para("The single definition of the features: training, calibration, parity and the device all "
                        "compute spectrograms from exactly these values (the bundle's manifest).", "muted"),
                   kv(pairs))


NAV = (("data", "Data"), ("training", "Training"), ("results", "Test results"), ("recordings", "Recordings"),
       ("parity", "Parity"), ("footprint", "Footprint"), ("stream", "Stream"), ("dsp", "DSP"))


def render_html(inputs: ReportInputs) -> str:
    """The whole report as one self-contained HTML document (pure: no file or network access)."""
    classes = _classes(inputs)
    nav_items = ((("models", "Models"),) if inputs.compared else ()) + NAV
    nav = "".join(f'<a href="#{ident}">{esc(label)}</a>' for ident, label in nav_items)
    body = [_compared_section(inputs),
            _data_section(inputs), _training_section(inputs), _results_section(inputs, classes),
            _recordings_section(inputs), _parity_section(inputs), _footprint_section(inputs),
            _stream_section(inputs), _dsp_section(inputs)]
    sources = kv(inputs.sources.items()) if inputs.sources else ""
    from edgecnn import __version__

    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>edgecnn report: {esc(inputs.title)}</title><style>{STYLE}</style></head><body>"
            f"{_header(inputs, classes)}<nav><div class=\"wrap\">{nav}</div></nav>"
            f"<main><div class=\"wrap\">{_cards(inputs)}{''.join(body)}</div></main>"
            f"<footer><div class=\"wrap\">Made by edgecnn {esc(__version__)} (<code>edgecnn report</code>) "
            f"from:{sources}</div></footer></body></html>\n")


__all__ = ["Located", "ReportInputs", "collect", "fit_checks", "locate", "model_row", "plot_state_timelines",
           "render_html"]
