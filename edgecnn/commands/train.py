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
    add_training_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seeds splits, weights and shuffling (0)")
    p.add_argument("--test-where", default=None,
                   help="test recordings by metadata, e.g. load_hp=1 (default: a quarter of each class)")
    p.add_argument("--test-fraction", type=float, default=0.25,
                   help="recordings per class held out (0.25); 0 trains on every recording and reports a "
                        "cross-validated estimate instead of a test accuracy (see --cv-by, --no-cv)")
    p.add_argument("--cv-by", default=None, metavar="KEY",
                   help="with --test-fraction 0: the estimate leaves one KEY group out (load_hp, "
                        "fault_diameter_in, load_lb, machine, recording; default machine when every "
                        "recording names one, as synthetic data do, else recording)")
    p.add_argument("--no-cv", action="store_true",
                   help="with --test-fraction 0: no cross-validation; the run then has no held-out estimate")
    p.add_argument("--strategy", choices=("none", "mirrored", "multiworker"), default="none",
                   help="tf.distribute: mirrored = all local GPUs, multiworker = machines in TF_CONFIG")
    p.add_argument("--cpu-devices", type=int, default=None,
                   help="split the CPU into N logical devices (try --strategy mirrored without GPUs)")
    p.add_argument("--mixed-precision", action="store_true", help="float16 compute on a GPU")
    p.add_argument("--force", action="store_true", help="replace an existing RUN_DIR")
    p.add_argument("--out", required=True, help="run directory to write")
    p.set_defaults(func=run)


def add_training_arguments(p) -> None:
    """The data and training arguments `train` and `cv` share: one spelling, one set of defaults."""
    p.add_argument("--data", required=True, help="recordings: pickle, npz folder, WAV, CSV or .mat")
    add_read_arguments(p)
    p.add_argument("--label-map", default=None, help="recording label -> class, e.g. 'normal=A,*=B'")
    p.add_argument("--arch", choices=("seed", "edge"), default="edge", help="model (default edge)")
    p.add_argument("--epochs", type=int, default=60, help="maximum epochs; early stopping ends sooner (60)")
    p.add_argument("--patience", type=int, default=12,
                   help="epochs without a better validation loss before stopping (12)")
    p.add_argument("--min-epochs", type=int, default=10,
                   help="early stopping never stops before this many epochs (10)")
    p.add_argument("--augment", type=int, default=2, metavar="COPIES",
                   help="altered copies of every training window: speed +-3 %% by resampling, time offset, "
                        "gain +-6 dB, noise at 15-40 dB SNR; never validation or test windows; 0 = off (2)")
    p.add_argument("--batch-size", type=int, default=32, help="windows per step and device (32)")
    p.add_argument("--transform", choices=("magnitude", "log"), default=None,
                   help="feature transform (default: magnitude for seed, log for edge)")
    p.add_argument("--feature", choices=("spectrogram", "envelope"), default=None,
                   help="image the model reads: the STFT, or the rolling envelope spectrum of the "
                        "1-6 kHz band (default: spectrogram for seed, envelope for edge; docs/dsp.md)")
    p.add_argument("--normalisation", choices=("per_bin", "global", "none"), default=None,
                   help="normalisation fitted on the training split (default: none for seed; edge: global on "
                        "envelope images, per_bin on spectrograms)")
    p.add_argument("--overlap", default="auto",
                   help="window overlap in [0, 1), or auto: 0.5 when a class has fewer than 100 windows "
                        "without overlap, else 0 (default auto)")
    p.add_argument("--cache-dir", default=None,
                   help="spectrogram cache (default $EDGECNN_CACHE_DIR or ~/.cache/edgecnn/spectrograms)")
    p.add_argument("--no-cache", action="store_true", help="compute spectrograms without the cache")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when the degenerate-model guard flags the model (docs/training.md)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")


def load_training_data(args, cfg):
    """The windows ``--data``/``--label-map``/``--overlap`` name, cut for ``cfg`` (the overlap chosen is
    printed, and recorded in the windows' summary)."""
    from edgecnn.dataset import load_windows, parse_overlap
    from edgecnn.progress import Progress

    data = load_windows(args.data, cfg, label_map=args.label_map, overlap=parse_overlap(args.overlap),
                        progress=Progress("reading", quiet=args.quiet), options=read_options(args))
    for note in data.label_notes:  # shown with --quiet too: it may mean the map has a typo
        print(f"edgecnn {args.command}: note: {note}", file=sys.stderr)
    if not args.quiet:
        print(f"window overlap {data.overlap_rule}")
    return data


def training_settings(args, cfg, data) -> dict:
    """The keyword arguments of the training step `train` and `cv` share, from their common arguments."""
    from edgecnn.augment import Augmentation

    return {"augmentation": Augmentation(copies=args.augment), "overlap": 1.0 - data.hop / cfg.window_samples}


def warn_degenerate(command: str, verdict: dict, strict: bool) -> int:
    """Print the guard's one-line warning (even with --quiet); the exit code --strict asks for."""
    if not verdict.get("degenerate"):
        return 0
    reasons = "; ".join(verdict.get("degenerate_reasons") or [])
    print(f"edgecnn {command}: warning: degenerate model: {reasons}. Likely cause: "
          f"{verdict.get('degenerate_cause')}", file=sys.stderr)
    return 1 if strict else 0


def run(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edgecnn.dataset import parse_where
    from edgecnn.quiet import import_tensorflow
    from edgecnn.train import check_out, default_config

    check_out(args.out, args.force)  # refuse before any slow work
    if args.cpu_devices is not None:
        if args.cpu_devices < 1:
            raise ConfigError(f"--cpu-devices {args.cpu_devices} must be >= 1")
        from edgecnn.fit import split_cpu

        import_tensorflow()
        split_cpu(args.cpu_devices)
    if args.test_fraction != 0 and (args.cv_by or args.no_cv):
        raise ConfigError("--cv-by and --no-cv apply to --test-fraction 0 (training on every recording); "
                          "otherwise use `edgecnn cv`")
    cfg = default_config(args.arch, args.transform, args.feature)
    data = load_training_data(args, cfg)
    import_tensorflow()  # now, quietly (edgecnn.quiet): bad input above was refused without it
    from edgecnn.train import train_run

    result = train_run(data, cfg, out=args.out, arch=args.arch, epochs=args.epochs,
                       batch_size=args.batch_size, seed=args.seed, label_map=args.label_map,
                       test_where=parse_where(args.test_where), test_fraction=args.test_fraction,
                       normalisation=args.normalisation, strategy=args.strategy,
                       mixed_precision=args.mixed_precision, quiet=args.quiet, force=args.force,
                       cache_dir=args.cache_dir, use_cache=not args.no_cache, data_source=str(args.data),
                       patience=args.patience, min_epochs=args.min_epochs, cv_by=args.cv_by, cv=not args.no_cv,
                       **training_settings(args, cfg, data))
    test, estimate = result.metrics["test"], result.metrics.get("estimate")  # the result: printed with --quiet too
    if test is not None:
        score = f"test accuracy {test['accuracy']:.4f} on {test['n']} windows"
    elif estimate.get("available"):
        score = f"trained on every recording, no test set; {estimate['summary']}"
    else:
        score = f"trained on every recording; {estimate['reason']}"
    print(f"{args.arch}: {score} ({result.footprint['params']} parameters, {result.footprint['macs']} MACs); "
          f"run in {result.out}")
    return warn_degenerate("train", result.metrics, args.strict)
