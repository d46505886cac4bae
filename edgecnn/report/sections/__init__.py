"""What each part of the page shows: one data function per section, ReportInputs in, plain data out.

A :class:`Section` names its id (the HTML anchor, and the template macro ``section_<id>`` that renders
it), its title, its nav label and its data function. A data function returns

- plain data (dicts, lists, numbers, names, PNG bytes) that its template macro lays out;
- :class:`Missing` when its inputs are absent: the page says what is missing and which command makes it;
- ``None`` when the section does not apply: it is left out of the page and the nav.

No HTML and no number formatting here: the template formats (filters ``num``, ``pct``, ``size``) and
escapes. :data:`SECTIONS` is the page's order. The run's sections are in :mod:`.run`, the bundle's and
the device's in :mod:`.device`; docs/report.md says how to add one (:func:`.device.dsp` is the smallest
complete example).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from edgecnn.report.read import ReportInputs


@dataclasses.dataclass(frozen=True)
class Missing:
    """A section whose inputs are absent: what is missing, and the command that makes it."""

    what: str
    how: str


@dataclasses.dataclass(frozen=True)
class Section:
    """One section of the page."""

    id: str
    """HTML id and nav anchor; the template renders the section with its macro ``section_<id>``."""
    title: str
    """The section's heading."""
    nav: str
    """Its label in the navigation bar."""
    data: Callable[[ReportInputs], Any]
    """ReportInputs -> plain data for the macro, :class:`Missing`, or None to leave the section out."""


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def pick(doc: dict, keys: tuple[str, ...]) -> dict:
    """The named fields of a JSON object, None where absent (the template shows '-')."""
    return {key: doc.get(key) for key in keys}


def header(inputs: ReportInputs) -> dict:
    """The page header and footer: what the report is about, when it was made, with which tools, from what."""
    manifest, run = inputs.manifest or {}, inputs.run_config or {}
    return {"title": inputs.title, "kind": "bundle" if inputs.manifest else "run",
            "arch": run.get("arch") or inputs.training.get("arch"), "exported": manifest.get("created"),
            "generated": inputs.generated, "classes": inputs.classes,
            "versions": manifest.get("tool_versions") or run.get("tool_versions") or {},
            "sources": inputs.sources}


def cards(inputs: ReportInputs) -> dict:
    """The summary cards' figures (None where unknown: that card is left out)."""
    test = (inputs.metrics or {}).get("test") or {}
    parity = inputs.parity or {}
    variants = (parity.get("model_level") or {}).get("variants") or {}
    int8 = variants.get("tflite_int8/litert") or next((v for v in variants.values() if v.get("dtype") == "int8"), {})
    reference = (variants.get((parity.get("model_level") or {}).get("reference")) or {}).get("accuracy")
    drop = reference - int8["accuracy"] if is_number(reference) and is_number(int8.get("accuracy")) else None
    file, entry = inputs.int8_model
    entry, footprint = entry or {}, (inputs.manifest or {}).get("footprint") or {}
    int8_fits = [f for f in inputs.fits if f["model"] == file]
    stream = inputs.stream or {}
    timing = stream.get("timing") or {}
    return {"float_accuracy": test.get("accuracy"), "test_windows": test.get("n"),
            "int8_accuracy": int8.get("accuracy"), "int8_drop": drop,
            "gate": (parity.get("gate") or {}).get("passed") if "gate" in parity else None,
            "max_drop": parity.get("max_drop"),
            "int8_bytes": entry.get("bytes"), "parameters": entry.get("parameters"),
            "arena": entry.get("arena_bytes") or footprint.get("arena_bytes_tflm"),
            "fitting": [f["profile"]["name"] for f in int8_fits if f["fits"]], "profiles": len(int8_fits),
            "realtime_factor": timing.get("realtime_factor"), "events": len(stream.get("events") or []),
            "deadline_misses": timing.get("deadline_misses") or 0}


from edgecnn.report.sections import device, run  # noqa: E402 (they use Missing and is_number above)

#: The page's sections, in page order.
SECTIONS: tuple[Section, ...] = (
    Section("models", "Models in this folder", "Models", run.compared),
    Section("data", "Data", "Data", run.data),
    Section("training", "Training", "Training", run.training),
    Section("results", "Test results", "Test results", run.results),
    Section("recordings", "Accuracy per recording", "Recordings", run.recordings),
    Section("cv", "Cross-validation across conditions", "Cross-validation", run.cross_validation),
    Section("parity", "Parity: float against int8", "Parity", device.parity),
    Section("footprint", "Footprint and device fit", "Footprint", device.footprint),
    Section("stream", "Stream", "Stream", device.stream),
    Section("integrity", "Bundle identity and integrity", "Integrity", device.integrity),
    Section("dsp", "DSP configuration", "DSP", device.dsp),
)
