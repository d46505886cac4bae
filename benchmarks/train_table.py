"""Seed vs edge CNN on the synthetic default data and the real-data tasks, recording-level splits.

For every task and architecture: ``edgecnn.train.train_run`` (the same engine as ``edgecnn train``),
then the float test accuracy, parameters, MACs, the model size (``model_int8.tflite`` as ``edgecnn export``
ships it: the full-integer int8 TFLite calibrated on the run's training windows, with its settings
metadata), the tflite-micro tensor arena and seconds per epoch on this CPU.

    python benchmarks/train_table.py [--tasks synth,cwru_ir_or,...] [--seeds 0] [--epochs 30]
                                     [--json OUT.json] [--keep DIR]

Prints a markdown table (mean over seeds; the per-seed accuracies in brackets) and, with --json,
every figure. Real data comes from the sibling ``shared/data`` folder; tasks without it are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DATA = ROOT.parent / "shared" / "data"


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    title: str
    data: str  # "synth" or a folder under shared/data
    label_map: str | None
    overlap: float
    split: str  # human-readable
    where: dict | None = None
    test_fraction: float = 0.25


TASKS = [
    Task("synth", "synthetic default (A healthy, B fault)", "synth", None, 0.0,
         "25 % of recordings per class held out (seed-drawn)"),
    Task("cwru_ir_or", "CWRU inner race (A) vs outer race (B)", "cwru", "inner_race=A,outer_race=B", 0.75,
         "train 0 hp, test 1 hp (leave a load out)", where={"load_hp": "1"}),
    Task("cwru_normal_fault", "CWRU normal (A) vs any fault (B)", "cwru", "normal=A,*=B", 0.9,
         "25 % of recordings per class held out; normal cut in time into 3 segments"),
    Task("cwru_4class", "CWRU 4 classes (normal, inner, outer, ball)", "cwru",
         "normal=normal,inner_race=inner,outer_race=outer,ball=ball", 0.9,
         "25 % of recordings per class held out; normal cut in time into 3 segments"),
    Task("mfpt_ir_or", "MFPT inner race (A) vs outer race (B)", "mfpt", "inner_race=A,outer_race=B", 0.9,
         "test the 50 lb load (one recording per class), train the others", where={"load_lb": "50.0"}),
]


def shipped_int8(run_dir: Path) -> tuple[int, int | None]:
    """The model size as every doc means it: bytes of ``model_int8.tflite`` as ``edgecnn export`` ships
    it (the int8 flatbuffer plus edgecnn's settings metadata), and its tflite-micro arena, both from an
    export of the run (export's own code, calibration and measurement)."""
    from export.bundle import load_bundle
    from export.writer import export_bundle

    with tempfile.TemporaryDirectory() as tmp:
        bundle = load_bundle(export_bundle(run_dir, Path(tmp) / "bundle", formats="tflite_int8", quiet=True))
        entry = bundle.model("tflite", "int8")
        return entry.bytes, entry.arena_bytes


def load_task(task: Task, cfg, cache: Path):
    from edgecnn import synth
    from edgecnn.dataset import load_windows

    if task.data == "synth":
        path = cache / "synth_n2000_seed0.pkl"
        if not path.exists():
            synth.write_pickle(path, synth.generate(n=2000, seed=0))
    else:
        path = DATA / task.data
        if not path.is_dir():
            return None, path
    return load_windows(path, cfg, label_map=task.label_map, overlap=task.overlap), path


def run_one(task: Task, arch: str, seed: int, epochs: int, workdir: Path, cache: Path) -> dict | None:
    from edgecnn.train import default_config, train_run

    cfg = default_config(arch)
    ws, path = load_task(task, cfg, cache)
    if ws is None:
        print(f"skip {task.name}: {path} not found", file=sys.stderr)
        return None
    out = workdir / f"{task.name}-{arch}-s{seed}"
    start = time.perf_counter()
    result = train_run(ws, cfg, out=out, arch=arch, epochs=epochs, seed=seed, label_map=task.label_map,
                       test_where=task.where, test_fraction=task.test_fraction, quiet=True, force=True,
                       cache_dir=cache / "spectrograms", data_source=str(path), overlap=task.overlap)
    wall = time.perf_counter() - start
    int8, arena = shipped_int8(out)
    test = result.metrics["test"]
    split = json.loads((out / "split.json").read_text())
    return {"task": task.name, "arch": arch, "seed": seed, "accuracy": test["accuracy"], "n_test": test["n"],
            "per_class_recall": {k: v["recall"] for k, v in test["per_class"].items()},
            "params": result.footprint["params"], "macs": result.footprint["macs"], "int8_bytes": int8,
            "arena_bytes": arena, "seconds_per_epoch": round(result.seconds_per_epoch, 2),
            "epochs_run": len(result.history["loss"]), "wall_s": round(wall, 1),
            "test_recordings": split["test"], "windows": split["windows"]}


def table(rows: list[dict]) -> str:
    lines = ["| task (split) | seed acc | edge acc | edge - seed | seed params / MACs / int8 | "
             "edge params / MACs / int8 / arena | s/epoch seed / edge |",
             "|---|---|---|---|---|---|---|"]
    for task in TASKS:
        by_arch = {a: [r for r in rows if r["task"] == task.name and r["arch"] == a] for a in ("seed", "edge")}
        if not by_arch["seed"] or not by_arch["edge"]:
            continue

        def acc(rs):
            mean = 100 * float(np.mean([r["accuracy"] for r in rs]))
            each = "" if len(rs) == 1 else " (" + ", ".join(f"{100 * r['accuracy']:.1f}" for r in rs) + ")"
            return mean, f"{mean:.1f} %{each}"

        (seed_mean, seed_txt), (edge_mean, edge_txt) = acc(by_arch["seed"]), acc(by_arch["edge"])
        s, e = by_arch["seed"][0], by_arch["edge"][0]
        lines.append(
            f"| {task.title} ({task.split}; {s['n_test']} test windows) | {seed_txt} | {edge_txt} | "
            f"{edge_mean - seed_mean:+.1f} | {s['params']:,} / {s['macs'] / 1e6:.2f} M / "
            f"{s['int8_bytes'] / 1024:.0f} KB | {e['params']:,} / {e['macs'] / 1e6:.2f} M / "
            f"{e['int8_bytes'] / 1024:.1f} KB / {(e['arena_bytes'] or 0) / 1024:.1f} KB | "
            f"{np.mean([r['seconds_per_epoch'] for r in by_arch['seed']]):.2f} / "
            f"{np.mean([r['seconds_per_epoch'] for r in by_arch['edge']]):.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(t.name for t in TASKS))
    parser.add_argument("--archs", default="seed,edge")
    parser.add_argument("--seeds", default="0", help="comma-separated training/split seeds")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--json", default=None, help="write every figure here")
    parser.add_argument("--keep", default=None, help="keep the run directories in this folder")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "edgecnn-bench-cache"))
    args = parser.parse_args(argv)
    names = args.tasks.split(",")
    unknown = sorted(set(names) - {t.name for t in TASKS})
    if unknown:
        parser.error(f"unknown tasks {unknown}")
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.keep) if args.keep else Path(tmp)
        for task in (t for t in TASKS if t.name in names):
            for seed in (int(s) for s in args.seeds.split(",")):
                for arch in args.archs.split(","):
                    row = run_one(task, arch, seed, args.epochs, workdir, cache)
                    if row:
                        rows.append(row)
                        print(json.dumps(row), file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
