"""``edgecnn synth``: write the built-in synthetic data set in the reference pickle format."""

from __future__ import annotations

import time

from edgecnn.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("synth", help="write the built-in synthetic vibration data (reference pickle format)",
                       description="Generate physically motivated synthetic vibration windows "
                                   "(class A healthy, B bearing defect) as a reference-format pickle.")
    p.add_argument("--out", required=True, help="output .pkl path")
    p.add_argument("--n", type=int, default=2000, help="number of 10000-sample windows (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--recordings", type=int, default=None,
                   help="number of recordings (machine states) the windows come from (default n/25)")
    p.add_argument("--machines", type=int, default=None,
                   help="number of machines the recordings come from (default recordings/2: one healthy and "
                        "one faulty recording each)")
    p.add_argument("--difficulty", type=float, default=1.0,
                   help="how far defect severity reaches into the noise (default 1.0, calibrated)")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgecnn import synth

    if not str(args.out).endswith((".pkl", ".pickle")):
        raise InputError(f"--out {args.out!r}: the reference format is a pickle; name it *.pkl")
    start = time.perf_counter()
    spec = synth.SynthSpec(n=args.n, seed=args.seed, n_recordings=args.recordings, n_machines=args.machines,
                           difficulty=args.difficulty)
    data = synth.generate(spec)
    generated = time.perf_counter() - start
    path = synth.write_pickle(args.out, data)
    if not args.quiet:
        counts = data["label"].sum(axis=0).astype(int).tolist()
        print(f"wrote {path}: {args.n} windows x {spec.window_samples} samples at {spec.fs:g} Hz, "
              f"{spec.recordings} recordings from {spec.machines} machines, "
              f"class A/B windows {counts[0]}/{counts[1]} "
              f"(generated in {generated:.1f} s, {path.stat().st_size / 1e6:.0f} MB)")
    return 0
