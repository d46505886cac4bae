"""The ``edgecnn`` command line: parses arguments, dispatches to ``edgecnn.commands.<name>``.

Exit codes: 0 success, 1 a gate failed (parity, device fit), 2 bad input or usage: one line on
stderr, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edgecnn import __version__
from edgecnn.errors import EdgeCNNError
from edgecnn.quiet import quiet_tensorflow_environment

#: Command name -> module under edgecnn.commands (imported to build the parser; keep them light).
COMMANDS = ("synth", "train", "cv", "export", "inspect", "stream", "predict", "parity", "fidelity", "report",
            "keygen", "firmware", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgecnn",
        description="Vibration recordings in, a deployable int8 spectrogram CNN out.")
    parser.add_argument("--version", action="version", version=f"edgecnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"edgecnn.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # before anything imports TensorFlow; it is imported through edgecnn.quiet.import_tensorflow, at first need
    quiet_tensorflow_environment()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except EdgeCNNError as exc:
        # One line whatever the message holds (a library's multi-line reason included).
        print(f"edgecnn {args.command}: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edgecnn {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
