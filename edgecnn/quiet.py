"""Quiet by default: TensorFlow's C++ start-up logs kept off the terminal, plain progress in logs.

TensorFlow writes C++ log lines to file descriptor 2 while it is imported ("All log messages before
absl::InitializeLog() is called are written to STDERR", "Could not find cuda drivers", and on first
use "failed call to cuInit ... (303)"). ``TF_CPP_MIN_LOG_LEVEL=3`` filters the lines TensorFlow's own
logger writes, but the start-up lines come from absl before it is initialised and ignore it, so
``import_tensorflow`` also points descriptor 2 at a temporary file for the length of the import (and
replays what it caught if the import fails). A user who sets ``TF_CPP_MIN_LOG_LEVEL`` gets exactly what
they asked for: nothing is hidden then.

This module imports nothing heavy (the device side imports the CLI); TensorFlow only inside
``import_tensorflow``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

#: The level edgecnn sets when the user has not: errors included, TensorFlow's C++ log is silent.
DEFAULT_TF_LOG_LEVEL = "3"
_MARK = "EDGECNN_QUIET_TF"


def quiet_tensorflow_environment() -> bool:
    """Set ``TF_CPP_MIN_LOG_LEVEL`` unless the user did; True when the level is edgecnn's choice.

    The choice is marked in the environment, so edgecnn's child processes (the demo's stream stage)
    keep treating it as edgecnn's and not as the user's.
    """
    if os.environ.get(_MARK) == "1":
        return True
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return False
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = DEFAULT_TF_LOG_LEVEL
    os.environ[_MARK] = "1"
    return True


@contextlib.contextmanager
def stderr_descriptor_captured() -> Iterator[Any]:
    """Point file descriptor 2 at a temporary file; yield the file (read it to see what was caught)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield caught
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def import_tensorflow() -> Any:
    """``import tensorflow`` without its C++ start-up lines on stderr (unless the user set a log level)."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if not quiet_tensorflow_environment():
        import tensorflow

        return tensorflow
    with stderr_descriptor_captured() as caught:
        try:
            import tensorflow
        except BaseException as exc:  # show what TensorFlow said on the way down, then the error
            failure = exc
            caught.seek(0)
            said = caught.read().decode(errors="replace")
        else:
            failure = None
    if failure is not None:
        sys.stderr.write(said)
        raise failure
    return tensorflow


def keras_verbosity() -> int:
    """Keras ``verbose``: a redrawn bar on a terminal (1), one plain line per epoch in a log file (2)."""
    return 1 if hasattr(sys.stdout, "isatty") and sys.stdout.isatty() else 2
