"""Fidelity table: data set x DSP backend -> per-frame SNR, int8 accuracy, agreement with the float pipeline.

For each data set: train the edge CNN on the log spectrogram (``edgecnn.train.train_run``, the engine of
``edgecnn train``; the q15 backend computes spectrograms, the envelope default runs on the numpy backend), export
the bundle declaring a +/-16 g 16-bit ADC and the cmsis-q15 backend (``export_bundle(dsp=..., adc=...)``,
as ``edgecnn export --dsp cmsis-q15 --adc-full-scale 16 --adc-bits 16``), then ``edgecnn.fidelity.evaluate``
on the run's test recordings (as ``edgecnn fidelity``). One more row per data set, ``q15 no BFP``, runs the
q15 path without block floating point: what the scaling stage is worth to the int8 model.

    python benchmarks/bench_fidelity.py [--tasks synth,cwru,mfpt] [--epochs 20] [--work DIR] [--json OUT]

Data sets: the synthetic default (``edgecnn synth``: 2000 windows, 80 recordings, a quarter of the
recordings per class held out); CWRU inner race (A) vs outer race (B), trained at 0 hp, tested at 1 hp;
MFPT inner vs outer race, the 50 lb load left out. Real data comes from the sibling ``shared/data``
folder; tasks without it are skipped. ``--work DIR`` keeps (and reuses) the run directories and bundles.
Several minutes on 2 cores (training dominates).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from edgecnn.quiet import quiet_tensorflow_environment  # noqa: E402

quiet_tensorflow_environment()

DATA = ROOT.parent / "shared" / "data"
ADC_FULL_SCALE, ADC_BITS = 16.0, 16


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    title: str
    data: str  # "synth" or a folder under shared/data
    label_map: str | None
    overlap: float
    where: dict | None


TASKS = [
    Task("synth", "synthetic default (25 % of recordings held out)", "synth", None, 0.0, None),
    Task("cwru", "CWRU inner (A) vs outer race (B), test 1 hp", "cwru", "inner_race=A,outer_race=B", 0.75,
         {"load_hp": "1"}),
    Task("mfpt", "MFPT inner (A) vs outer race (B), test 50 lb", "mfpt", "inner_race=A,outer_race=B", 0.9,
         {"load_lb": "50.0"}),
]


def data_path(task: Task, work: Path) -> Path | None:
    from edgecnn import synth

    if task.data == "synth":
        path = work / "synth_n2000_seed0.pkl"
        if not path.exists():
            synth.write_pickle(path, synth.generate(n=2000, seed=0))
        return path
    path = DATA / task.data
    return path if path.is_dir() else None


def bundle_for(task: Task, path: Path, work: Path, epochs: int) -> Path:
    """Train (unless the run exists in ``work``) and export with the device declaration."""
    from edgecnn.dataset import load_windows
    from edgecnn.quiet import import_tensorflow
    from edgecnn.train import default_config, train_run
    from export.writer import export_bundle
    from firmware_sim.adc import ADC

    run = work / f"run-{task.name}"
    if not (run / "config.json").is_file():
        import_tensorflow()  # without TensorFlow's start-up log lines
        cfg = default_config("edge", feature="spectrogram")
        ws = load_windows(path, cfg, label_map=task.label_map, overlap=task.overlap)
        train_run(ws, cfg, out=run, arch="edge", epochs=epochs, seed=0, label_map=task.label_map,
                  test_where=task.where, quiet=True, force=True, use_cache=False, data_source=str(path),
                  overlap=task.overlap)
    return export_bundle(run, work / f"bundle-{task.name}", quiet=True, force=True,
                         formats="tflite_int8,tflite_float32", dsp="cmsis-q15",
                         adc=ADC(full_scale=ADC_FULL_SCALE, bits=ADC_BITS))


def no_bfp_row(bundle, data, result) -> dict:
    """The q15 path without block floating point, through the same int8 model."""
    from edgecnn.dsp import transform_magnitudes
    from edgecnn.parity import run_variant
    from firmware_sim.adc import ADC
    from firmware_sim.dsp_backends import NumpyBackend, Q15Backend, backend_spectrogram
    from firmware_sim.dsp_fidelity import compare_frames

    windows = data.windows.windows
    backend = Q15Backend(ADC.from_dict(bundle.device["adc"]), block_floating_point=False)
    mag = backend_spectrogram(windows, bundle.cfg, backend)
    ref = backend_spectrogram(windows, bundle.cfg, NumpyBackend())
    frames = compare_frames(np.swapaxes(mag, -1, -2).reshape(-1, mag.shape[-2]),
                            np.swapaxes(ref, -1, -2).reshape(-1, ref.shape[-2]), "q15 no BFP")
    predicted = run_variant(bundle, "litert", "int8", transform_magnitudes(mag, bundle.cfg)[..., None]).argmax(1)
    int8_ref = run_variant(bundle, "litert", "int8", transform_magnitudes(ref, bundle.cfg)[..., None]).argmax(1)
    float_pred = run_variant(bundle, "litert", "float32", transform_magnitudes(ref, bundle.cfg)[..., None]).argmax(1)
    return {"device": {"backend": "cmsis-q15 (block floating point off)", "adc": bundle.device["adc"]},
            "frames": frames.to_dict(), "adc": {"saturated": backend.adc.saturated},
            "int8_accuracy": float(np.mean(predicted == data.labels)),
            "agreement_with_float_pipeline": float(np.mean(predicted == float_pred)),
            "agreement_with_int8_on_float_features": float(np.mean(predicted == int8_ref))}


def evaluate_task(task: Task, work: Path, epochs: int) -> dict | None:
    from edgecnn import fidelity, parity
    from export.bundle import load_bundle

    path = data_path(task, work)
    if path is None:
        print(f"skip {task.name}: {DATA / task.data} not found", file=sys.stderr)
        return None
    start = time.perf_counter()
    bundle = load_bundle(bundle_for(task, path, work, epochs))
    data = parity.select_data(bundle, path, overlap=task.overlap)
    result = fidelity.evaluate(bundle, data)
    result["backends"]["q15 no BFP"] = no_bfp_row(bundle, data, result)
    result["task"], result["title"], result["overlap"] = task.name, task.title, task.overlap
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def _db(value: float | None) -> str:
    return "exact" if value is None or value == float("inf") else f"{value:.1f}"


def table(results: list[dict]) -> str:
    lines = ["| data set (test windows, frames) | backend | clipped | SNR worst / p05 / median (dB) | max rel. err "
             "| int8 acc | vs int8 on float features | agreement with float pipeline |",
             "|---|---|---:|---|---:|---:|---:|---:|"]
    for r in results:
        head = f"{r['title']} ({r['n_windows']} windows, {r['n_windows'] * r['frames_per_window']} frames)"
        base = r["int8_on_float_features"]["accuracy"]
        lines.append(f"| {head} | float pipeline (float definition + float32 model) | - | - | - | "
                     f"{100 * r['float_pipeline']['accuracy']:.1f} % | - | - |")
        lines.append(f"| | float definition + int8 model | - | - | - | {100 * base:.1f} % | - | "
                     f"{100 * r['int8_on_float_features']['agreement_with_float_pipeline']:.1f} % |")
        for name, row in r["backends"].items():
            f = row["frames"]
            lines.append(
                f"| | {name} | {row['adc']['saturated']} | {_db(f['snr_db_min'])} / {_db(f['snr_db_p05'])} / "
                f"{_db(f['snr_db_median'])} | {f['max_rel_error']:.1e} | {100 * row['int8_accuracy']:.1f} % | "
                f"{100 * (row['int8_accuracy'] - base):+.1f} pt | "
                f"{100 * row['agreement_with_float_pipeline']:.1f} % |")
    return "\n".join(lines)


def curves(results: list[dict]) -> str:
    lines = []
    for r in results:
        c = r.get("q15_snr_curve")
        if not c:
            continue
        levels = [p["level_dbfs"] for p in c["points"]]
        lines.append(f"q15 SNR vs peak level, {r['task']} ({c['windows']} test windows scaled to each level):")
        lines.append("  dBFS        " + " ".join(f"{lv:>6g}" for lv in levels))
        lines.append("  worst frame " + " ".join(f"{p['snr_db_min']:6.1f}" for p in c["points"]))
        lines.append("  median      " + " ".join(f"{p['snr_db_median']:6.1f}" for p in c["points"]))
        budget = r["q15_error_budget"]["stages"]
        lines.append("  error budget at the data's own level (pooled SNR after each integer stage): "
                     + ", ".join(f"{b['backend']} {b['snr_db_pooled']:.1f}" for b in budget))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default=",".join(t.name for t in TASKS))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--work", default=None, help="keep and reuse run directories and bundles here")
    parser.add_argument("--json", default=None, help="write every figure here")
    args = parser.parse_args(argv)
    names = args.tasks.split(",")
    unknown = sorted(set(names) - {t.name for t in TASKS})
    if unknown:
        parser.error(f"unknown tasks {unknown}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = [r for t in TASKS if t.name in names if (r := evaluate_task(t, work, args.epochs))]
    print(f"ADC +/-{ADC_FULL_SCALE:g} g, {ADC_BITS} bits; edge CNN, {args.epochs} epochs max, seed 0; "
          "int8 TFLite in LiteRT; SNR per frame against the float definition of the unquantised windows")
    print(table(results))
    print()
    print(curves(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
