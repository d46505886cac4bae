"""Cross-validation across conditions for every task and architecture: the table docs/training_results.md shows.

Each row runs ``edgecnn cv`` in-process (``edgecnn.cli.main``, so the defaults are exactly the
command's) and writes ``benchmarks/results/cv/<row>_<arch>/`` (cv.json, cv.md, cv.png); then
``benchmarks/results/cv/summary.md`` is rebuilt from every cv.json there.

    PYTHONPATH=. python benchmarks/cv_table.py [--rows cwru_ir_or_load,...] [--archs edge,seed]
                                               [--seeds 0,1,2] [--epochs N] [--out DIR] [--summary-only]

Resumable: a row whose cv.json exists with the same seeds (and --epochs, when given) is skipped
(delete the folder to run it again); one with other seeds is run again. Real data comes
from the sibling ``shared/data`` folder; rows without it are skipped. ``--epochs`` overrides the
default maximum (for a quick proof; the published table uses the defaults).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "cv"
#: The share of a held-out recording's windows the acceptance asks for, in every fold.
TARGET = 0.95


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    title: str
    data: str
    """``synth`` or a folder under shared/data."""
    label_map: str | None
    by: str
    """Metadata key left out; for synth: ``machine`` when the recordings carry it, else ``recording``."""
    folds: int | None = None
    """Groups left out this many folds at a time (GroupKFold) instead of one at a time."""


ROWS = (
    Row("cwru_ir_or_load", "CWRU inner (A) vs outer race (B), leave one load out", "cwru",
        "inner_race=A,outer_race=B", "load_hp"),
    Row("cwru_ir_or_diameter", "CWRU inner (A) vs outer race (B), leave one fault diameter out", "cwru",
        "inner_race=A,outer_race=B", "fault_diameter_in"),
    Row("cwru_normal_fault_load", "CWRU normal (A) vs any fault (B), leave one load out", "cwru",
        "normal=A,*=B", "load_hp"),
    Row("mfpt_ir_or_load", "MFPT inner (A) vs outer race (B), leave one load out", "mfpt",
        "inner_race=A,outer_race=B", "load_lb"),
    Row("synth_machine", "synthetic healthy (A) vs fault (B), leave machines out (5 folds of 8 machines)", "synth",
        None, "machine", folds=5),
)


def synth_data(cache: Path) -> Path:
    from edgecnn import synth

    path = cache / "synth_n2000_seed0.pkl"
    if not path.exists():
        synth.write_pickle(path, synth.generate(n=2000, seed=0))
    return path


def synth_key(path: Path) -> str:
    """``machine`` when every synthetic recording carries a machine id, else ``recording``."""
    from edgecnn.readers import read_recordings

    return "machine" if all(r.meta.get("machine") is not None for r in read_recordings(path)) else "recording"


def run_row(row: Row, arch: str, seeds: str, epochs: int | None, out_root: Path, cache: Path) -> Path | None:
    from edgecnn.cli import main

    out = out_root / f"{row.name}_{arch}"
    if (out / "cv.json").is_file():
        done = json.loads((out / "cv.json").read_text())
        same = (done.get("seeds") == [int(s) for s in seeds.split(",")]
                and (epochs is None or (done.get("training") or {}).get("epochs") == epochs))
        if same:
            print(f"skip {out.name}: cv.json with these seeds exists", file=sys.stderr)
            return out
        print(f"rerun {out.name}: its cv.json has seeds {done.get('seeds')}", file=sys.stderr)
    if row.data == "synth":
        path = synth_data(cache)
        by = synth_key(path)
    else:
        path, by = DATA / row.data, row.by
        if not path.is_dir():
            print(f"skip {out.name}: {path} not found", file=sys.stderr)
            return None
    argv = ["cv", "--data", str(path), "--by", by, "--arch", arch, "--seeds", seeds, "--out", str(out),
            "--cache-dir", str(cache / "spectrograms"), "--force"]
    if row.label_map:
        argv += ["--label-map", row.label_map]
    if epochs:
        argv += ["--epochs", str(epochs)]
    if row.folds:
        argv += ["--folds", str(row.folds)]
    print(f"\n== {out.name}: edgecnn {' '.join(argv)}", file=sys.stderr, flush=True)
    code = main(argv)
    if code == 2:
        raise SystemExit(f"{out.name}: edgecnn cv failed")
    return out


def _pct(stats: dict) -> str:
    return "-" if stats.get("mean") is None else f"{100 * stats['mean']:.1f} ± {100 * stats['std']:.1f}"


def summary(out_root: Path) -> str:
    """summary.md: one line per row and architecture from every cv.json under ``out_root``."""
    titles = {r.name: r.title for r in ROWS}
    lines = ["| row | arch | left out | folds | seeds | float % | int8 % | float - int8 | recordings < 95 % int8 "
             "(lowest seed) | degenerate fold models | epochs |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in ROWS:
        for arch in ("seed", "edge"):
            path = out_root / f"{row.name}_{arch}" / "cv.json"
            if not path.is_file():
                continue
            doc = json.loads(path.read_text())
            s = doc["summary"]
            low = [f"{r['recording']} {100 * r['int8_stats']['min']:.0f}" for r in doc["recordings"]
                   if r["int8_stats"]["min"] < TARGET]
            flagged = len(s.get("degenerate_runs") or [])
            lines.append(f"| [{titles[row.name]}]({row.name}_{arch}/cv.md) | {arch} | {doc['by']} | "
                         f"{len(doc['folds'])} | {', '.join(map(str, doc['seeds']))} | {_pct(s['float'])} | "
                         f"{_pct(s['int8'])} | {_pct(s['int8_drop'])} | {', '.join(low) or 'none'} | "
                         f"{flagged} of {len(doc['folds']) * len(doc['seeds'])} | "
                         f"{(doc.get('training') or {}).get('epochs')} max |")
    return ("Cross-validation across conditions (`benchmarks/cv_table.py`, `edgecnn cv` with its defaults "
            "unless the epochs column says otherwise). Accuracy over every window, each recording tested once "
            "per seed by a model that never saw its group; mean ± standard deviation over seeds.\n\n"
            + "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(r.name for r in ROWS))
    parser.add_argument("--archs", default="edge,seed")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=None, help="override the default maximum epochs")
    parser.add_argument("--out", default=str(RESULTS), help=f"results folder (default {RESULTS})")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "edgecnn-bench-cache"))
    parser.add_argument("--summary-only", action="store_true", help="rebuild summary.md from the cv.json files")
    args = parser.parse_args(argv)
    names = [n for n in args.rows.split(",") if n]
    unknown = sorted(set(names) - {r.name for r in ROWS})
    if unknown:
        parser.error(f"unknown rows {unknown}; known: {[r.name for r in ROWS]}")
    archs = [a for a in args.archs.split(",") if a]
    if set(archs) - {"edge", "seed"}:
        parser.error(f"--archs {args.archs}: choose from edge, seed")
    out_root, cache = Path(args.out), Path(args.cache)
    out_root.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    if not args.summary_only:
        for row in (r for r in ROWS if r.name in names):
            for arch in archs:
                run_row(row, arch, args.seeds, args.epochs, out_root, cache)
    text = summary(out_root)
    (out_root / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
