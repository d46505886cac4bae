"""``edgecnn train``: recordings in, a trained model and its run directory out.

Keeps TensorFlow out of module import (the CLI builds every parser); it loads inside ``run``.
"""

from __future__ import annotations

import os
import sys

from edgecnn.commands import add_read_arguments, read_options
from edgecnn.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "train", help="train the seed or edge CNN on recordings; writes a run directory",
        description="Cut recordings into windows, split by recording, compute spectrograms (cached), "
                    "train with early stopping and write model, config, split, history, metrics and "
                    "plots to RUN_DIR.")
    p.add_argument("--data", required=True, help="recordings: pickle, npz folder, WAV, CSV or .mat")
    add_read_arguments(p)
    p.add_argument("--label-map", default=None, help="recording label -> class, e.g. 'normal=A,*=B'")
    p.add_argument("--arch", choices=("seed", "edge"), default="edge", help="model (default edge)")
    p.add_argument("--epochs", type=int, default=60, help="maximum epochs; early stopping ends sooner (60)")
    p.add_argument("--patience", type=int, default=12,
                   help="epochs without a better validation loss before stopping (12)")
    p.add_argument("--batch-size", type=int, default=32, help="windows per step and device (32)")
    p.add_argument("--seed", type=int, default=0, help="seeds splits, weights and shuffling (0)")
    p.add_argument("--transform", choices=("magnitude", "log"), default=None,
                   help="feature transform (default: magnitude for seed, log for edge)")
    p.add_argument("--normalisation", choices=("per_bin", "global", "none"), default=None,
                   help="normalisation fitted on the training split (default: none for seed, per_bin for edge)")
    p.add_argument("--overlap", type=float, default=0.0, help="window overlap in [0, 1) (default 0)")
    p.add_argument("--test-where", default=None,
                   help="test recordings by metadata, e.g. load_hp=1 (default: a quarter of each class)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="recordings per class held out (0.25)")
    p.add_argument("--strategy", choices=("none", "mirrored", "multiworker"), default="none",
                   help="tf.distribute: mirrored = all local GPUs, multiworker = machines in TF_CONFIG")
    p.add_argument("--cpu-devices", type=int, default=None,
                   help="split the CPU into N logical devices (try --strategy mirrored without GPUs)")
    p.add_argument("--mixed-precision", action="store_true", help="float16 compute on a GPU")
    p.add_argument("--cache-dir", default=None,
                   help="spectrogram cache (default $EDGECNN_CACHE_DIR or ~/.cache/edgecnn/spectrograms)")
    p.add_argument("--no-cache", action="store_true", help="compute spectrograms without the cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    p.add_argument("--force", action="store_true", help="replace an existing RUN_DIR")
    p.add_argument("--out", required=True, help="run directory to write")
    p.set_defaults(func=run)


def run(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edgecnn.dataset import load_windows, parse_where
    from edgecnn.progress import Progress
    from edgecnn.quiet import import_tensorflow
    from edgecnn.train import check_out, default_config

    check_out(args.out, args.force)  # refuse before any slow work
    if args.cpu_devices is not None:
        if args.cpu_devices < 1:
            raise ConfigError(f"--cpu-devices {args.cpu_devices} must be >= 1")
        from edgecnn.fit import split_cpu

        import_tensorflow()
        split_cpu(args.cpu_devices)
    cfg = default_config(args.arch, args.transform)
    data = load_windows(args.data, cfg, label_map=args.label_map, overlap=args.overlap,
                        progress=Progress("reading", quiet=args.quiet), options=read_options(args))
    for note in data.label_notes:  # shown with --quiet too: it may mean the map has a typo
        print(f"edgecnn train: note: {note}", file=sys.stderr)
    import_tensorflow()  # now, quietly (edgecnn.quiet): bad input above was refused without it
    from edgecnn.train import train_run

    result = train_run(data, cfg, out=args.out, arch=args.arch, epochs=args.epochs,
                       batch_size=args.batch_size, seed=args.seed, label_map=args.label_map,
                       test_where=parse_where(args.test_where), test_fraction=args.test_fraction,
                       normalisation=args.normalisation, strategy=args.strategy,
                       mixed_precision=args.mixed_precision, quiet=args.quiet, force=args.force,
                       cache_dir=args.cache_dir, use_cache=not args.no_cache, data_source=str(args.data),
                       overlap=args.overlap, patience=args.patience)
    test = result.metrics["test"]  # the result: printed with --quiet too
    print(f"{args.arch}: test accuracy {test['accuracy']:.4f} on {test['n']} windows "
          f"({result.footprint['params']} parameters, {result.footprint['macs']} MACs); run in {result.out}")
    return 0
