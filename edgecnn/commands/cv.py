"""``edgecnn cv``: leave-one-group-out cross-validation across recording conditions (edgecnn/cv.py).

Trains one model per held-out group and seed with the training step and defaults of ``edgecnn
train``, evaluates float and int8 on the held-out recordings, writes cv.json, cv.md and cv.png.
"""

from __future__ import annotations

import os
from pathlib import Path

from edgecnn.commands.train import add_training_arguments, load_training_data, training_settings, warn_degenerate
from edgecnn.errors import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "cv", help="cross-validate across conditions: leave one load / fault size / recording out",
        description="Group the recordings by a metadata key (or by recording), hold each group out in turn "
                    "(scikit-learn LeaveOneGroupOut), train with the defaults of `edgecnn train`, quantise "
                    "to int8 and score float and int8 on every held-out recording, for each seed. Writes "
                    "cv.json, cv.md and cv.png to --out.")
    add_training_arguments(p)
    p.add_argument("--by", required=True, metavar="KEY",
                   help="metadata key whose values are left out one at a time: load_hp, fault_diameter_in, "
                        "load_lb, machine, or recording (each recording its own fold)")
    p.add_argument("--folds", type=int, default=None, metavar="K",
                   help="leave the groups out K at a time (GroupKFold) instead of one at a time: for many "
                        "machines or recordings")
    p.add_argument("--seeds", default="0,1,2", help="seeds, comma-separated (0,1,2): mean and spread over them")
    p.add_argument("--force", action="store_true", help="replace cv.json, cv.md and cv.png already in --out")
    p.add_argument("--out", required=True, help="folder for cv.json, cv.md and cv.png")
    p.set_defaults(func=run)


def run(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from edgecnn.cv import CV_FILE, cross_validate, parse_seeds, summary_line, write_outputs

    seeds = parse_seeds(args.seeds)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a folder")
    if (out / CV_FILE).exists() and not args.force:
        raise ConfigError(f"--out {out} already holds {CV_FILE}; choose another folder or pass --force")
    from edgecnn.fit import FitOptions
    from edgecnn.train import default_config

    options = FitOptions(epochs=args.epochs, batch_size=args.batch_size, patience=args.patience,
                         min_epochs=args.min_epochs, quiet=args.quiet)
    cfg = default_config(args.arch, args.transform, args.feature)
    data = load_training_data(args, cfg)
    from edgecnn.quiet import import_tensorflow

    import_tensorflow()  # now, quietly (edgecnn.quiet): bad input above was refused without it
    doc = cross_validate(data, cfg, by=args.by, seeds=seeds, arch=args.arch, options=options,
                         normalisation=args.normalisation, cache_dir=args.cache_dir,
                         use_cache=not args.no_cache, quiet=args.quiet, data_source=str(args.data),
                         label_map=args.label_map, n_folds=args.folds, **training_settings(args, cfg, data))
    write_outputs(doc, out)
    if not args.quiet:
        print(f"{args.arch}: {summary_line(doc)}; wrote {out / CV_FILE}, cv.md, cv.png")
    summary = doc["summary"]
    reasons, runs = list(summary["degenerate_reasons"]), summary["degenerate_runs"]
    cause = "the pooled predictions of every fold are no better than chance (see cv.md)"
    if runs:
        first = runs[0]
        reasons.append(f"{len(runs)} of {len(doc['folds']) * len(seeds)} fold models flagged (first: seed "
                       f"{first['seed']} fold {first['fold']}: {'; '.join(first['reasons'])})")
        cause = first["cause"]
    verdict = {"degenerate": summary["degenerate"], "degenerate_reasons": reasons, "degenerate_cause": cause}
    return warn_degenerate("cv", verdict, args.strict)
