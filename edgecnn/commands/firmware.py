"""``edgecnn firmware BUNDLE_DIR --out DIR [--measure]``: the bundle's C device library.

Writes the generated ``firmware/`` folder (``export.firmware``: edgecnn_config.h, edgecnn_dsp.{c,h},
the TFLM glue, an example main loop) for a verified bundle into DIR. A bundle the generator cannot
express is refused with one line (exit 2). With ``--measure`` the library, TFLM and the model are
cross-compiled for a Cortex-M4 and run on QEMU's MPS2 AN386 board on the bundle's golden windows:
the stages are compared with the golden vectors and the footprint (flash, RAM, instructions per
DSP frame and per inference) is written beside the bundle (``BUNDLE_DIR.firmware.json``), where
``inspect``, ``stream --profile`` and the report read it. Device side: no TensorFlow.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecnn.commands import add_require_signature_argument
from edgecnn.errors import InputError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "firmware", help="generate the bundle's C device library (DSP, decisions, TFLM glue)",
        description="Write the C99 device library generated from a bundle (edgecnn_config.h, edgecnn_dsp.c/.h, "
                    "edgecnn_model.cc, an example main loop) into DIR. --measure cross-compiles it for a "
                    "Cortex-M4, runs the golden windows on QEMU (mps2-an386), checks every stage and records the "
                    "measured footprint beside the bundle.")
    p.add_argument("bundle", metavar="BUNDLE_DIR", help="bundle folder written by `edgecnn export`")
    add_require_signature_argument(p)
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the sources into")
    p.add_argument("--force", action="store_true", help="write into DIR even if it holds other files")
    p.add_argument("--measure", action="store_true",
                   help="build for Cortex-M4, run the golden windows on QEMU, write BUNDLE_DIR.firmware.json")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from export import firmware
    from export.bundle import load_bundle

    bundle = load_bundle(args.bundle, require_signature=args.require_signature)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    sources = firmware.firmware_sources(firmware.inputs_from_bundle(bundle))
    others = sorted(p.name for p in out.iterdir() if p.name not in sources) if out.is_dir() else []
    if others and not args.force:
        raise InputError(f"--out {out} holds other files ({', '.join(others[:3])}...); choose an empty folder "
                         f"or pass --force")
    written = firmware.write_sources(sources, out)
    print(f"wrote {len(written)} files to {out} (bundle {bundle.digest[:16]}...)")
    if args.measure:
        from export import firmware_measure

        result = firmware_measure.measure(bundle, out)
        path = firmware_measure.write_results(bundle.path, result)
        print(firmware_measure.format_result(result))
        print(f"measurements written to {path}")
        if not result["golden"]["all_equal"]:
            print(json.dumps(result["golden"], indent=2))
            return 1
    return 0
