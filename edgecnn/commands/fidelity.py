"""``edgecnn fidelity``: what each device DSP backend (numpy, cmsis-f32, cmsis-q15) does to the features
and to the int8 model's accuracy, on the test recordings of the bundle's run.

TF-free: the report runs the bundle's TFLite models in LiteRT and the DSP in numpy/cmsisdsp.
"""

from __future__ import annotations

from pathlib import Path

from edgecnn.commands import add_bundle_data_arguments, read_options
from edgecnn.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "fidelity", help="per-frame error and int8 accuracy of each device DSP backend against the float pipeline",
        description="Compute the features of the test windows with each DSP backend (behind the bundle's declared "
                    "ADC), compare every frame with the float definition (SNR, max relative error), run the "
                    "bundle's int8 model on each backend's features (accuracy, agreement with the float "
                    "pipeline), and report the q15 path's SNR against signal level and its error budget.")
    add_bundle_data_arguments(p)
    p.add_argument("--backends", default="numpy,cmsis-f32,cmsis-q15",
                   help="DSP backends to evaluate (default numpy,cmsis-f32,cmsis-q15)")
    p.add_argument("--runtime", choices=("litert", "tflm"), default="litert",
                   help="interpreter for the bundle's TFLite models (default litert)")
    p.add_argument("--max-drop", type=float, default=None,
                   help="gate: exit 1 when a backend's int8 accuracy falls more than this below the int8 "
                        "model on the float definition's features (e.g. 0.005)")
    p.add_argument("--no-curve", action="store_true", help="skip the q15 SNR-vs-level curve and error budget")
    p.add_argument("--json", default=None, metavar="OUT", help="write the results as JSON")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="accuracy per backend and the q15 SNR curve")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from edgecnn import fidelity, parity
    from edgecnn.fileio import write_json
    from edgecnn.progress import Progress
    from export.bundle import load_bundle

    if args.max_drop is not None and not 0.0 <= args.max_drop <= 1.0:
        raise ConfigError(f"--max-drop {args.max_drop} must be in [0, 1]")
    backends = tuple(b.strip() for b in args.backends.split(",") if b.strip())
    bundle = load_bundle(args.bundle, require_signature=args.require_signature)
    data = parity.select_data(bundle, args.data, label_map=args.label_map, overlap=args.overlap,
                              progress=Progress("features", quiet=args.quiet), options=read_options(args))

    def say(message: str) -> None:
        if not args.quiet:
            print(f"fidelity: {message}", file=sys.stderr, flush=True)

    result = fidelity.evaluate(bundle, data, backends=backends, runtime=args.runtime, curve=not args.no_curve,
                               say=say)
    result["data"] = str(args.data)
    hop = getattr(data.windows, "hop", None)
    result["overlap"] = round(1.0 - hop / bundle.cfg.window_samples, 6) if hop else None
    failures = []
    if args.max_drop is not None:
        base = result["int8_on_float_features"]["accuracy"]
        failures = [f"{name}: int8 accuracy {row['int8_accuracy']:.4f} is {base - row['int8_accuracy']:.4f} below "
                    f"{base:.4f} (int8 on the float definition's features); --max-drop {args.max_drop}"
                    for name, row in result["backends"].items() if base - row["int8_accuracy"] > args.max_drop]
        result["gate"] = {"max_drop": args.max_drop, "passed": not failures, "failures": failures}
    if args.json:
        write_json(Path(args.json), result)
    if args.plot:
        fidelity.plot_fidelity(result, args.plot)
    print(fidelity.format_report(result))
    if args.max_drop is not None:
        print("gate: PASSED" if not failures else "gate: FAILED")
        for failure in failures:
            print(f"  - {failure}")
    return 1 if failures else 0
