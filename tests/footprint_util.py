"""Measure a .tflite's tensor arena under tflite-micro (its allocator prints it from native code)."""

import ctypes
import os
import re
import sys
import tempfile
from pathlib import Path


def tflm_arena_bytes(path: Path) -> int:
    """``Arena allocation total`` of tflite-micro's recording allocator, captured at the fd level."""
    import pytest

    runtime = pytest.importorskip("tflite_micro", reason="tflite-micro is not installed").runtime
    interpreter = runtime.Interpreter.from_file(str(path), arena_size=None)
    libc = ctypes.CDLL(None)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = {fd: os.dup(fd) for fd in (1, 2)}  # native logging may use either stream
        for fd in saved:
            os.dup2(capture.fileno(), fd)
        try:
            interpreter.print_allocations()
            libc.fflush(None)
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    match = re.search(r"Arena allocation total (\d+) bytes", text)
    assert match, f"no arena line in tflite-micro's report: {text[:300]!r}"
    return int(match.group(1))
