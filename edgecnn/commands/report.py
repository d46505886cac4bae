"""``edgecnn report``: one self-contained HTML page about a run, its bundle, parity and a stream.

Reads (edgecnn.report.collect), renders (edgecnn.report.render_html) and writes the page atomically.
No TensorFlow: the report reads the files training, export, parity and stream wrote.
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgecnn.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a run, bundle or demo folder",
                       description="Data summary, training curves, confusion matrices, accuracy per recording, "
                                   "the parity table and gate, footprint against the device profiles, the stream "
                                   "timeline and the DSP config, in one HTML file with its images embedded.")
    p.add_argument("path", metavar="RUN_OR_BUNDLE",
                   help="a run directory, a bundle, or a folder holding both (edgecnn demo --out DIR)")
    p.add_argument("--out", default="report.html", help="HTML file to write (default report.html)")
    p.add_argument("--stream-json", default=None, metavar="STREAM.json",
                   help="what `edgecnn stream --json` wrote (default: a stream result found in a demo folder)")
    p.add_argument("--stream-plot", default=None, metavar="STREAM.png",
                   help="the stream's `--plot` PNG (default: the JSON's name with .png, when it exists)")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p.set_defaults(func=run)


def run(args) -> int:
    from edgecnn.fileio import atomic_write
    from edgecnn.report import collect, render_html

    out = Path(args.out)
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name such as {out / 'report.html'}")
    inputs = collect(args.path, stream_json=args.stream_json, stream_plot=args.stream_plot)
    page = render_html(inputs)
    atomic_write(out, page)
    if not args.quiet:
        parts = ", ".join(inputs.sources) or "nothing"
        print(f"wrote {out} ({len(page.encode()) / 1024:.0f} KiB, {len(inputs.images)} images) from {parts}",
              file=sys.stdout)
    return 0
