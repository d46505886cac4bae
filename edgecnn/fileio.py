"""Atomic file writes: a temporary file beside the target, then one rename.

An interrupted command leaves the previous file or none, never half a file. numpy only (the device
side writes its JSON reports through here too).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


@contextlib.contextmanager
def atomic_open(path: str | Path, *, permissions: int = 0o666, replace: bool = True) -> Iterator[BinaryIO]:
    """A binary file handle whose content appears at ``path`` only when the block succeeds.

    Writes go to a hidden temporary file beside the target (same file system, so the final
    ``os.replace`` is atomic), which is flushed to disk before the rename; an exception (or a
    kill) leaves ``path`` as it was. Creates the parent folder. ``permissions`` (less the umask)
    apply from the temporary file's creation on (0o600 for a private key is never readable by
    others, even half-written); ``replace=False`` refuses an existing ``path`` (FileExistsError),
    atomically (a hard link, which fails when the name exists).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, permissions), "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` atomically; creates the parent folder."""
    with atomic_open(path) as fh:
        fh.write(data.encode() if isinstance(data, str) else data)
    return Path(path)


def save_figure(fig: Any, path: str | Path, *, dpi: int = 90) -> Path:
    """Save a matplotlib figure as PNG, atomically (the caller closes the figure)."""
    with atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=dpi)
    return Path(path)


def jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars and arrays converted, NaN and infinities as null."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically."""
    # default=str: an unforeseen object in a report is written as its text rather than losing the
    # whole file at the end of a long command.
    return atomic_write(path, json.dumps(jsonable(data), indent=2, allow_nan=False, default=str) + "\n")
