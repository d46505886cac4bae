"""``edgecnn parity``: float vs quantised for every format of a bundle, and on a stream; a CI gate."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgecnn.commands import add_bundle_data_arguments, read_options
from edgecnn.errors import ConfigError, InputError

STREAM_MODES = ("auto", "synth", "data", "none")


def register(sub) -> None:
    p = sub.add_parser("parity", help="float vs int8 accuracy and agreement per format, on windows and a stream",
                       description="Evaluate every model file of a bundle in its runtime on the same windows, "
                                   "compare with float, stream float and int8 through firmware_sim, and fail "
                                   "(exit 1) when int8 falls too far below float.")
    add_bundle_data_arguments(p)
    p.add_argument("--max-drop", type=float, default=0.01,
                   help="largest accuracy drop of an int8 variant below float (default 0.01)")
    p.add_argument("--min-agreement", type=float, default=0.98,
                   help="smallest prediction agreement of an int8 variant with float (default 0.98)")
    p.add_argument("--run", default=None,
                   help="the run directory (Keras reference, --debug-layers); default: the bundle's own run "
                        "when it still exists")
    p.add_argument("--no-keras", action="store_true", help="do not evaluate the Keras model even if found")
    p.add_argument("--runtimes", default="litert,tflm,onnxruntime",
                   help="runtimes to evaluate (default litert,tflm,onnxruntime)")
    p.add_argument("--stream", choices=STREAM_MODES, default="auto",
                   help="stream-level parity: synthetic onset stream, the test recordings back to back, or "
                        "none (auto: synth for pickled windows, else data)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file (they always go to "
                                                "BUNDLE_DIR.parity.json beside the bundle)")
    p.add_argument("--plot", default=None, help="write a PNG: accuracy per format, float vs int8 probabilities")
    p.add_argument("--debug-layers", action="store_true",
                   help="per-layer float vs int8 error of the TFLite int8 model (needs the run directory)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgecnn import parity
    from edgecnn.fileio import write_json
    from edgecnn.progress import Progress
    from edgecnn.rundir import read_run
    from export.bundle import load_bundle, parity_results_path

    if not 0.0 <= args.max_drop <= 1.0:
        raise ConfigError(f"--max-drop {args.max_drop} must be in [0, 1]")
    if not 0.0 <= args.min_agreement <= 1.0:
        raise ConfigError(f"--min-agreement {args.min_agreement} must be in [0, 1]")
    runtimes = tuple(r.strip() for r in args.runtimes.split(",") if r.strip())
    bundle = load_bundle(args.bundle, require_signature=args.require_signature)
    run_dir = _find_run(args, bundle)
    data = parity.select_data(bundle, args.data, label_map=args.label_map, overlap=args.overlap,
                              progress=Progress("features", quiet=args.quiet), options=read_options(args))
    for note in data.windows.label_notes:
        print(f"edgecnn parity: note: {note}", file=sys.stderr)
    keras_model = None if (args.no_keras or run_dir is None) else read_run(run_dir).model_path
    model = parity.model_level(bundle, data, keras_model=keras_model, quiet=args.quiet, runtimes=runtimes)
    probabilities = model.pop("probabilities")

    mode = args.stream
    if mode == "auto":
        pickled = all(Path(r["source"]).suffix in (".pkl", ".pickle") for r in data.windows.recordings)
        mode = "synth" if pickled and len(bundle.classes) == 2 else "data"
    stream = None
    if mode == "synth":
        stream = parity.stream_level(bundle, parity.synthetic_timelines(bundle))
    elif mode == "data":
        stream = parity.stream_level(bundle, [parity.recording_timeline(bundle, data)])

    layers = None
    if args.debug_layers:
        if run_dir is None:
            raise InputError("--debug-layers needs the run directory: pass --run RUN_DIR")
        from edgecnn import dsp, quant_debug

        info = read_run(run_dir)
        windows, _ = info.calibration()
        layers = quant_debug.layer_errors(info.model_path, dsp.features(windows, info.cfg), data.images[:64])

    failures = parity.gate(model, stream, max_drop=args.max_drop, min_agreement=args.min_agreement)
    # Parity compares model formats on the float definition's features (numpy DSP, no ADC) in windows and
    # streams alike; the declared device DSP is what `edgecnn fidelity` evaluates.
    result = {"bundle": str(Path(args.bundle).resolve()), "bundle_digest": bundle.digest,
              "signature": bundle.signature.to_json() if bundle.signature else None,
              "data": str(args.data), "classes": bundle.classes,
              "dsp": "numpy", "declared_device": bundle.device,
              "max_drop": args.max_drop, "min_agreement": args.min_agreement, "model_level": model,
              "stream_level": stream, "debug_layers": layers, "gate": {"passed": not failures,
                                                                        "failures": failures}}
    write_json(parity_results_path(args.bundle), result)  # beside the bundle: never inside what it signs
    if args.json:
        write_json(Path(args.json), result)
    if args.plot:
        from edgecnn.plots_basic import plot_parity

        plot_parity(model, probabilities, bundle.classes, args.plot)
    print(format_report(result))
    return 0 if not failures else 1


def _find_run(args, bundle) -> Path | None:
    if args.run:
        path = Path(args.run)
        if not (path / "config.json").is_file():
            raise InputError(f"--run {path}: not a run directory")
        return path
    guess = (bundle.manifest.get("training") or {}).get("run_path")
    if guess and (Path(guess) / "model.keras").is_file():
        return Path(guess)
    return None


def format_report(result: dict) -> str:
    model = result["model_level"]
    ref = model["reference"]
    ref_acc = model["variants"][ref]["accuracy"]
    lines = [f"parity of {result['bundle']} on {model['n_windows']} windows ({model['selection']})",
             f"bundle digest {result.get('bundle_digest')}",
             f"reference: {ref}",
             f"  {'variant':<26} {'accuracy':>8} {'drop':>7} {'agree':>7} {'max|dp|':>8} {'rmse':>8} "
             f"{'cosine':>7} {'ms/win':>7}"]
    for name, v in model["variants"].items():
        e = v["vs_reference"]
        lines.append(f"  {name:<26} {v['accuracy']:8.4f} {ref_acc - v['accuracy']:7.4f} {e['agreement']:7.4f} "
                     f"{e['max_abs_error']:8.4f} {e['rmse']:8.4f} {e['cosine_similarity']:7.4f} "
                     f"{v['ms_per_window']:7.2f}")
    lines.extend(per_recording_lines(model))
    stream = result.get("stream_level")
    if stream:
        lines.append(f"stream level ({stream['runtime']}):")
        for s in stream["streams"]:
            lines.append(f"  {s['description']} ({s['seconds']:.0f} s)")
            for dtype, m in s["variants"].items():
                delays = ", ".join(f"{d:.2f}" for d in m["detection_delay_s"]) or "-"
                acc = f"{m['decision_accuracy']:.4f}" if m["decision_accuracy"] is not None else "-"
                lines.append(f"    {dtype:<8} decisions {m['decisions']}, accuracy {acc}, false alarms "
                             f"{m['false_alarms']} ({m['false_alarms_per_hour']:.1f}/h), missed {m['missed']} of "
                             f"{m['class_changes']}, delay s [{delays}]")
            if s.get("decision_agreement") is not None:
                lines.append(f"    float vs int8: decision agreement {s['decision_agreement']:.4f}, state "
                             f"agreement {s['state_agreement']:.4f}, same events {s['same_events']}")
    if result.get("debug_layers"):
        worst = sorted(result["debug_layers"], key=lambda r: -r["rmse_over_scale"])[:8]
        lines.append("layers with the largest float vs int8 error (rmse/scale; ~0.29 is rounding noise):")
        for r in worst:
            lines.append(f"    {r['rmse_over_scale']:6.3f}  {r['op']:<20} {r['tensor'][:60]}")
    gate = result["gate"]
    lines.append("gate: PASSED" if gate["passed"] else "gate: FAILED")
    lines.extend(f"  - {f}" for f in gate["failures"])
    return "\n".join(lines)


def per_recording_lines(model: dict) -> list[str]:
    """Accuracy per recording of the reference and every int8 variant, the worst recording first."""
    names = [n for n, v in model["variants"].items()
             if (n == model["reference"] or v.get("dtype") == "int8") and v.get("per_recording")]
    if not names:
        return []
    columns = {n: {r["recording"]: r for r in model["variants"][n]["per_recording"]} for n in names}
    ids = sorted({rid for col in columns.values() for rid in col},
                 key=lambda rid: (min(col[rid]["accuracy"] for col in columns.values() if rid in col), str(rid)))
    width = max(9, *(len(str(rid)) for rid in ids))
    lines = ["accuracy per recording (worst first):",
             f"  {'recording':<{width}} {'class':<10} {'windows':>7} " + " ".join(f"{n:>20}" for n in names)]
    for rid in ids:
        info = next(col[rid] for col in columns.values() if rid in col)
        accs = " ".join(f"{columns[n][rid]['accuracy']:20.4f}" if rid in columns[n] else f"{'-':>20}"
                        for n in names)
        lines.append(f"  {str(rid):<{width}} {str(info['class']):<10} {info['n']:>7} {accs}")
    return lines


def dumps(result: dict) -> str:
    return json.dumps(result, indent=2)
