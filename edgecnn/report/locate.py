"""Which files a path given to ``edgecnn report`` stands for: a run, a bundle (or several), a stream result.

Reads only enough of each candidate (its ``config.json`` / ``manifest.json`` format, a JSON's keys) to
tell what it is; reading the contents is :mod:`edgecnn.report.read`'s job.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from edgecnn.errors import InputError

#: What ``edgecnn cv`` writes (edgecnn/cv.py; not imported: that module is the training side's).
CV_FILE = "cv.json"


def read_json(path: Path) -> Any:
    """A JSON file's content; an unreadable file is bad input (one line, exit 2)."""
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read JSON ({exc})") from None


def _kind(path: Path) -> str | None:
    """``run``, ``bundle`` or None for a folder, from its config.json / manifest.json format."""
    for name, fmt, kind in (("manifest.json", "edgecnn-bundle", "bundle"), ("config.json", "edgecnn-run", "run")):
        candidate = path / name
        if candidate.is_file():
            try:
                doc = json.loads(candidate.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(doc, dict) and doc.get("format") == fmt:
                return kind
    return None


def is_stream_result(doc: Any) -> bool:
    """True for what ``edgecnn stream --json`` writes (it has timing, events and decisions)."""
    return isinstance(doc, dict) and {"timing", "events", "decisions"} <= set(doc)


def is_folder_of_results(path: str | Path) -> bool:
    """True for a folder holding runs and bundles (a demo folder), False for a run or bundle itself."""
    return _kind(Path(path)) is None


@dataclasses.dataclass
class Located:
    """What a path given to ``edgecnn report`` stands for (None where absent)."""

    run: Path | None = None
    bundle: Path | None = None
    stream: Path | None = None
    other_bundles: list[Path] = dataclasses.field(default_factory=list)
    """Further bundles of a folder holding several (``edgecnn demo --with-seed``), in name order."""
    cv: Path | None = None
    """An ``edgecnn cv`` result (cv.json): in the folder given, or in the run's ``cv/`` (``--test-fraction 0``)."""


def locate(path: str | Path) -> Located:
    """The run directory, bundle and stream result a path stands for.

    ``path`` is a run directory, a bundle (its run found through the manifest's ``training.run_path``
    when that folder still exists) or a folder holding them (``edgecnn demo --out DIR``): there, its
    sub-folders are searched two levels deep, the first bundle in name order is the one described,
    its own run is preferred (by ``run_path``, else by the run folder's name), and a top-level JSON
    file with ``edgecnn stream --json``'s keys is taken as the stream result.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path}: not a folder; give a run directory, a bundle or a demo output folder")
    found = Located()
    kind = _kind(path)
    runs: list[Path] = []
    if kind is not None:
        setattr(found, kind, path)
    else:
        subdirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        subdirs += sorted(q for p in subdirs for q in p.iterdir() if q.is_dir() and not q.name.startswith("."))
        runs = [p for p in subdirs if _kind(p) == "run"]
        bundles = [p for p in subdirs if _kind(p) == "bundle"]
        if (path / CV_FILE).is_file():
            found.cv = path / CV_FILE
        if not runs and not bundles and found.cv is None:
            raise InputError(f"{path}: holds no edgecnn run directory or bundle (looked two folders deep), "
                             "nor a cv.json; give the folder `edgecnn train --out`, `edgecnn export --out` or "
                             "`edgecnn cv --out` wrote")
        found.run = runs[0] if runs else None
        if bundles:
            found.bundle, found.other_bundles = bundles[0], bundles[1:]
        for candidate in sorted(path.glob("*.json")):
            try:
                doc = json.loads(candidate.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                continue
            if is_stream_result(doc):
                found.stream = candidate
                break
    if found.bundle is not None:
        training = read_json(found.bundle / "manifest.json").get("training") or {}
        own = training.get("run_path")
        if own and _kind(Path(own)) == "run":
            found.run = Path(own)
        elif training.get("run"):
            # In a moved demo folder run_path is stale: match the run by its folder name.
            same_name = [p for p in runs if p.name == training["run"]]
            if same_name:
                found.run = same_name[0]
    if found.cv is None and found.run is not None and (found.run / "cv" / CV_FILE).is_file():
        found.cv = found.run / "cv" / CV_FILE
    return found
