"""``edgecnn demo``: the main job end to end on the built-in synthetic data, with stage timings."""

from __future__ import annotations

import time
from pathlib import Path

from edgecnn.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the whole job on built-in synthetic data",
                       description="Synthesise data, compute features, and (as the toolkit grows) train, "
                                   "export, check parity and stream; prints a summary with stage times.")
    p.add_argument("--out", default="demo_out", help="output folder (default demo_out)")
    p.add_argument("--n", type=int, default=2000, help="synthetic windows (default 2000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgecnn import dsp, synth
    from edgecnn.config import SpectrogramConfig
    from edgecnn.dataset import load_windows
    from edgecnn.plots_basic import plot_example_spectrograms
    from edgecnn.progress import Progress

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    stages: list[tuple[str, float, str]] = []

    start = time.perf_counter()
    data_path = synth.write_pickle(out / "data.pkl", synth.generate(n=args.n, seed=args.seed))
    stages.append(("synthesise", time.perf_counter() - start, f"{args.n} windows -> {data_path}"))

    start = time.perf_counter()
    cfg = SpectrogramConfig()
    ws = load_windows(data_path, cfg)
    images = dsp.features(ws.windows, cfg, progress=Progress("spectrograms", quiet=args.quiet))
    plot = plot_example_spectrograms(images, ws.labels, ws.classes, cfg, out / "spectrograms.png")
    stages.append(("features", time.perf_counter() - start,
                   f"{images.shape[0]} x {images.shape[1]}x{images.shape[2]} images, examples in {plot}"))

    print("edgecnn demo summary")
    for name, seconds, what in stages:
        print(f"  {name:<11} {seconds:6.1f} s  {what}")
    return 0
