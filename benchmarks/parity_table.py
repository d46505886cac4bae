"""Float vs quantised for every format, seed and edge, on the synthetic default data and the real-data tasks.

For each task of benchmarks/train_table.py and each architecture: train with the same engine (or reuse a
run directory kept by ``train_table.py --keep DIR``), export the bundle with every default format, then
run ``edgecnn parity`` on the run's own test recordings (recording-level split): accuracy of Keras float,
LiteRT float32/int8, tflite-micro int8, ONNX Runtime float32/int8, their agreement with Keras and the max
probability error. The synthetic edge bundle is also streamed (float and int8) over synthetic onset streams.

    python benchmarks/parity_table.py [--tasks synth,cwru_ir_or,...] [--archs seed,edge] [--work DIR]
                                      [--json OUT.json]

Prints a markdown table; the gate criterion of the parity issue is a drop <= 0.5 point for every int8 format.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import train_table  # noqa: E402  (the task list and the training step, shared)

FORMATS = ("keras_float32", "tflite_float32/litert", "tflite_int8/litert", "tflite_int8/tflm",
           "onnx_float32/onnxruntime", "onnx_int8/onnxruntime")


def parity_for(run_dir: Path, bundle_dir: Path, data: Path, *, stream: bool) -> dict:
    from edgecnn.cli import main
    from export.bundle import parity_results_path

    if not (bundle_dir / "manifest.json").exists():
        from export.writer import export_bundle

        export_bundle(run_dir, bundle_dir, quiet=True, force=True)
    out = parity_results_path(bundle_dir)  # where parity writes anyway: beside the bundle
    code = main(["parity", str(bundle_dir), "--data", str(data), "--run", str(run_dir), "--quiet",
                 "--stream", "synth" if stream else "none", "--json", str(out)])
    result = json.loads(out.read_text())
    result["exit_code"] = code
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(t.name for t in train_table.TASKS))
    parser.add_argument("--archs", default="seed,edge")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--work", default=None, help="keep run directories and bundles here (reused if present)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    cache = Path(tempfile.gettempdir()) / "edgecnn-bench-cache"
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="parity-table-"))
    rows = []
    for task in (t for t in train_table.TASKS if t.name in args.tasks.split(",")):
        for arch in args.archs.split(","):
            run_dir = work / f"{task.name}-{arch}-s{args.seed}"
            start = time.perf_counter()
            if not (run_dir / "model.keras").exists():
                if train_table.run_one(task, arch, args.seed, args.epochs, work, cache) is None:
                    continue
            data = Path(json.loads((run_dir / "config.json").read_text())["data"]["source"])
            result = parity_for(run_dir, work / f"bundle-{task.name}-{arch}", data,
                                stream=task.name == "synth" and arch == "edge")
            rows.append({"task": task.name, "title": task.title, "arch": arch, "parity": result,
                         "wall_s": round(time.perf_counter() - start, 1)})
            print(json.dumps({"task": task.name, "arch": arch, "gate": result["gate"]}), file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def table(rows: list[dict]) -> str:
    lines = ["| data set (test windows) | model | format | accuracy | drop vs Keras | agreement | max prob error |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        model = row["parity"]["model_level"]
        ref = model["variants"][model["reference"]]["accuracy"]
        for name in FORMATS:
            v = model["variants"].get(name)
            if v is None:
                continue
            e = v["vs_reference"]
            lines.append(f"| {row['title']} ({model['n_windows']}) | {row['arch']} | {name} | "
                         f"{100 * v['accuracy']:.2f} % | {100 * (ref - v['accuracy']):+.2f} | "
                         f"{100 * e['agreement']:.2f} % | {e['max_abs_error']:.4f} |")
    for row in rows:
        stream = row["parity"].get("stream_level")
        if not stream:
            continue
        lines.append("")
        lines.append(f"Stream level, {row['title']}, {row['arch']} (LiteRT float32 vs int8):")
        lines.append("")
        lines.append("| stream | variant | decisions | false alarms | missed | delay (s) | decision agreement | "
                     "state agreement |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for s in stream["streams"]:
            for dtype, m in s["variants"].items():
                delay = ", ".join(f"{d:.2f}" for d in m["detection_delay_s"]) or "-"
                lines.append(f"| {s['description']} | {dtype} | {m['decisions']} | {m['false_alarms']} | "
                             f"{m['missed']} | {delay} | {100 * s['decision_agreement']:.2f} % | "
                             f"{100 * s['state_agreement']:.2f} % |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
