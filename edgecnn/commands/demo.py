"""``edgecnn demo``: the main job end to end on the built-in synthetic data, with stage timings.

Every stage runs the real command in-process (``edgecnn.cli.main``), so the demo shows exactly what a
user's own run prints: synth -> train (edge; seed too with --with-seed) -> export -> parity -> stream a
fault-onset recording through firmware_sim -> one HTML report; then a summary read back from the files the
stages wrote.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from edgecnn.errors import EdgeCNNError, InputError

ONSET_STREAM = "synth:duration=60,onset=30,seed=7"
#: Written first into a demo folder: the folder is edgecnn demo's own output, so a rerun may replace it.
MARKER = ".edgecnn-demo"
MARKER_TEXT = "This folder is the output of `edgecnn demo`; a new `edgecnn demo --out` here replaces all of it.\n"
DEFAULT_OUT = "out/demo"


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the whole job on built-in synthetic data",
                       description="Synthesise data, train the edge CNN, export the bundle, run the parity gate "
                                   "and stream a fault-onset recording through firmware_sim; prints a summary "
                                   "with the time of each stage.")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"output folder (default {DEFAULT_OUT}); a previous demo's folder is replaced")
    p.add_argument("--n", type=int, default=2000, help="synthetic windows (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--epochs", type=int, default=None,
                   help="maximum training epochs (default: edgecnn train's; early stopping ends sooner)")
    p.add_argument("--with-seed", action="store_true", help="also train, export and check the seed CNN")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty folder that is not a previous demo's (its files are kept)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


class _Stages:
    def __init__(self) -> None:
        self.rows: list[tuple[str, float]] = []

    def run(self, name: str, argv: list[str], *, gate: bool = False, subprocess: bool = False) -> int:
        from edgecnn.cli import main

        print(f"\n== {name}: edgecnn {' '.join(argv)}", flush=True)
        start = time.perf_counter()
        if subprocess:
            import subprocess as sp
            import sys

            code = sp.run([sys.executable, "-m", "edgecnn", *argv]).returncode
        else:
            code = main(argv)
        self.rows.append((name, time.perf_counter() - start))
        if code == 2 or (code == 1 and not gate):
            raise EdgeCNNError(f"demo stage {name!r} failed (exit {code}); see the messages above")
        return code


def run(args) -> int:
    out = Path(args.out)
    prepare_out(out, force=args.force)
    quiet = ["--quiet"] if args.quiet else []
    force = ["--force"]
    stages = _Stages()
    data = out / "data.pkl"
    stages.run("synthesise", ["synth", "--out", str(data), "--n", str(args.n), "--seed", str(args.seed)])
    archs = ["edge", "seed"] if args.with_seed else ["edge"]
    gates, degenerate = {}, {}
    for arch in archs:
        run_dir, bundle = out / f"run_{arch}", out / f"bundle_{arch}"
        epochs = ["--epochs", str(args.epochs)] if args.epochs else []
        # --strict: a degenerate model (edgecnn/guard.py) fails the demo (exit 1, as a failed gate); the
        # remaining stages still run, so the folder and the report show what went wrong.
        degenerate[arch] = stages.run(f"train {arch}", ["train", "--data", str(data), "--arch", arch, *epochs,
                                                        "--strict", "--seed", str(args.seed), "--out", str(run_dir),
                                                        *force, *quiet], gate=True)
        stages.run(f"export {arch}", ["export", str(run_dir), "--out", str(bundle), *force, *quiet])
        gates[arch] = stages.run(f"parity {arch}", ["parity", str(bundle), "--data", str(data), "--plot",
                                                    str(out / f"parity_{arch}.png"), *quiet], gate=True)
    stream_json = out / "stream_edge.json"
    # The device side runs in a process of its own, as on a device: no TensorFlow, its own memory figures.
    stages.run("stream edge", ["stream", str(out / "bundle_edge"), "--source", ONSET_STREAM, "--json",
                               str(stream_json), "--events", str(out / "events_edge.jsonl"), "--plot",
                               str(out / "stream_edge.png"), "--profile", "cortex-m4", *quiet],
               gate=True, subprocess=True)
    stages.run("report", ["report", str(out), "--out", str(out / "report.html"), *quiet])
    print("\n" + summary(out, archs, stages.rows, gates))
    return 0 if all(code == 0 for code in (*gates.values(), *degenerate.values())) else 1


def is_demo_folder(out: Path) -> bool:
    """True when ``out`` holds the marker a previous ``edgecnn demo`` wrote (and nothing says otherwise)."""
    marker = out / MARKER
    return marker.is_file() and not marker.is_symlink() and marker.read_text(errors="replace") == MARKER_TEXT


def prepare_out(out: Path, *, force: bool) -> None:
    """An empty folder, a previous demo's folder (emptied), or with ``force`` any folder; then the marker.

    Anything else is refused: a folder of other files is never emptied.
    """
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise InputError(f"--out {out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if is_demo_folder(out):
            shutil.rmtree(out)
        elif not force:
            raise InputError(f"--out {out}: folder is not empty and is not a previous demo's (no {MARKER} "
                             f"file); choose another folder, or pass --force to write into it")
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(MARKER_TEXT)


def summary(out: Path, archs: list[str], rows: list[tuple[str, float]], gates: dict[str, int]) -> str:
    """The short summary: accuracy float and int8, bundle size, arena, stream events and real-time factor."""
    from export.bundle import parity_results_path

    lines = ["edgecnn demo summary", f"  results in {out}/ (open {out / 'report.html'})"]
    for arch in archs:
        metrics = json.loads((out / f"run_{arch}" / "metrics.json").read_text())
        manifest = json.loads((out / f"bundle_{arch}" / "manifest.json").read_text())
        parity = json.loads(parity_results_path(out / f"bundle_{arch}").read_text())
        variants = parity["model_level"]["variants"]
        ref = parity["model_level"]["reference"]
        int8 = variants["tflite_int8/litert"]
        int8_model = next(m for m in manifest["models"].values() if m["format"] == "tflite" and m["dtype"] == "int8")
        if metrics.get("degenerate"):
            lines.append(f"  {arch}: DEGENERATE model (edgecnn/guard.py): {'; '.join(metrics['degenerate_reasons'])}. "
                         f"Likely cause: {metrics['degenerate_cause']}")
        lines.append(f"  {arch}: test accuracy float {variants[ref]['accuracy']:.4f} ({ref}), int8 "
                     f"{int8['accuracy']:.4f} (agreement {int8['vs_reference']['agreement']:.4f}) on "
                     f"{parity['model_level']['n_windows']} test windows; parity gate "
                     f"{'passed' if gates[arch] == 0 else 'FAILED'}")
        lines.append(f"        int8 model {int8_model['bytes']:,} bytes, {metrics.get('params', 0):,} "
                     f"parameters, {int8_model.get('macs') or 0:,} MACs, tensor arena "
                     f"{manifest['footprint'].get('arena_bytes_tflm', 0):,} bytes")
    stream_file = out / "stream_edge.json"
    if stream_file.exists():
        stream = json.loads(stream_file.read_text())
        events = stream.get("events", [])
        timing = stream.get("timing", {})
        described = ", ".join(f"{e['from']}->{e['to']} at {e['time_s']:.2f} s" for e in events) or "none"
        lines.append(f"  stream (60 s, fault onset at 30 s): events {described}; real-time factor "
                     f"{timing.get('realtime_factor', float('nan')):.0f}x, CPU load "
                     f"{100 * timing.get('cpu_load', float('nan')):.2f} %")
    lines.append("  stage times:")
    lines.extend(f"    {name:<14} {seconds:7.1f} s" for name, seconds in rows)
    lines.append(f"    {'total':<14} {sum(s for _, s in rows):7.1f} s")
    return "\n".join(lines)
