"""Shared test helpers: run the real CLI in a subprocess, locate the shared real data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The current environment with this checkout first on PYTHONPATH (works from any cwd)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.update(extra)
    return env


def run_cli(*args: str, cwd: str | Path | None = None, timeout: float = 600, input: str | bytes | None = None,
            **env: str) -> subprocess.CompletedProcess:
    """Run ``python -m edgecnn ARGS`` and capture its output as text."""
    return subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=input is None
                          or isinstance(input, str), cwd=cwd, timeout=timeout, input=input,
                          env=subprocess_env(**env))
