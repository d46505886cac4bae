"""Read what the report shows: a run's JSON and PNGs, a verified bundle, its parity results, a stream result.

:func:`collect` turns a path (and optionally a stream result and its plot) into a :class:`ReportInputs`:
the files' contents as they are, the device-fit checks computed from the manifest, and the figures no
file holds drawn in memory (:mod:`edgecnn.report.figures`). It reads files and writes none. No HTML here.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from pathlib import Path

from edgecnn.errors import InputError
from edgecnn.report.locate import is_folder_of_results, is_stream_result, locate, read_json

#: Run-directory PNGs (edgecnn/train.py ``_plots``), embedded as they are: image key -> file name.
RUN_IMAGES = {"training_curves": "training_curves.png", "confusion_matrix": "confusion_matrix.png",
              "example_spectrograms": "example_spectrograms.png", "test_prediction": "test_prediction.png"}
#: Where an older edgecnn wrote parity results (inside the bundle); now they sit beside it.
PARITY_FILE = "parity.json"


@dataclasses.dataclass
class ReportInputs:
    """Everything the page shows, already read from disk (any part may be missing: None or empty)."""

    title: str
    """Header title: the bundle's (or run's, or demo folder's) name."""
    generated: str
    """When the report was made (ISO 8601, UTC)."""
    run_config: dict | None = None
    """The run's ``config.json``."""
    metrics: dict | None = None
    """The run's ``metrics.json`` (test classification report)."""
    history: dict | None = None
    """The run's ``history.json``."""
    split: dict | None = None
    """The run's ``split.json``."""
    manifest: dict | None = None
    """The bundle's ``manifest.json``."""
    identity: dict | None = None
    """The verified bundle's identity: ``digest``, ``signature`` (None when unsigned), ``unlisted``
    files and ``checks_skipped`` (``export.bundle.Bundle``)."""
    parity: dict | None = None
    """The bundle's parity results (``edgecnn parity``: ``BUNDLE.parity.json`` beside it)."""
    stream: dict | None = None
    """What ``edgecnn stream --json`` wrote."""
    firmware: dict | None = None
    """The generated firmware measured on an emulated Cortex-M4 (``edgecnn firmware --measure``:
    ``BUNDLE.firmware.json`` beside the bundle, of this bundle's digest)."""
    fits: list[dict] = dataclasses.field(default_factory=list)
    """Fit checks against device profiles: ``{"model": file, "dsp": backend, **FitReport.to_json()}``."""
    images: dict[str, bytes] = dataclasses.field(default_factory=dict)
    """PNG bytes by key: RUN_IMAGES keys, ``stream_plot``, ``stream_timeline``, ``parity_timelines``."""
    notes: dict[str, str] = dataclasses.field(default_factory=dict)
    """Why an image key is absent when its inputs are present (e.g. matplotlib is not installed)."""
    sources: dict[str, str] = dataclasses.field(default_factory=dict)
    """What was read, for the footer: role -> path."""
    compared: list[dict] = dataclasses.field(default_factory=list)
    """One row per bundle of a demo folder holding several (``model_row``); empty otherwise."""
    cv: dict | None = None
    """What ``edgecnn cv`` wrote (cv.json), from the folder given or the run's ``cv/``."""

    @property
    def classes(self) -> list[str]:
        """Class names, from the manifest, else the run, else parity."""
        for doc in (self.manifest, self.run_config, self.parity):
            if doc and isinstance(doc.get("classes"), list):
                return [str(c) for c in doc["classes"]]
        return []

    @property
    def training(self) -> dict:
        """The manifest's ``training`` summary (arch, run, label map, data), or empty."""
        return (self.manifest or {}).get("training") or {}

    @property
    def dsp(self) -> dict | None:
        """The DSP config as JSON: the bundle's, else the run's."""
        return (self.manifest or {}).get("dsp") or (self.run_config or {}).get("dsp")

    @property
    def int8_model(self) -> tuple[str, dict] | tuple[None, None]:
        """The bundle's int8 TFLite model: (file name, manifest entry)."""
        return int8_entry(self.manifest)


def int8_entry(manifest: dict | None) -> tuple[str, dict] | tuple[None, None]:
    for file, entry in ((manifest or {}).get("models") or {}).items():
        if entry.get("format") == "tflite" and entry.get("dtype") == "int8":
            return file, entry
    return None, None


def collect(path: str | Path, *, stream_json: str | Path | None = None,
            stream_plot: str | Path | None = None, now: _dt.datetime | None = None) -> ReportInputs:
    """Read a run / bundle / demo folder (and optionally a stream result and its plot) for the report."""
    from edgecnn.report.figures import plot_missing

    found = locate(path)
    if stream_json is not None:
        found.stream = Path(stream_json)
    if stream_plot is not None and found.stream is None:
        raise InputError("--stream-plot needs the stream's JSON too (--stream-json)")
    now = now or _dt.datetime.now(_dt.timezone.utc)
    # A demo folder is named after the whole job; a bundle or run stands for itself.
    named = Path(path) if is_folder_of_results(path) else (found.bundle or found.run)
    inputs = ReportInputs(title=Path(named).resolve().name, generated=now.replace(microsecond=0).isoformat())
    if found.run is not None:
        _read_run(inputs, found.run)
    if found.bundle is not None:
        _read_bundle(inputs, found.bundle, found.other_bundles)
    if found.stream is not None:
        _read_stream(inputs, found.stream, Path(stream_plot) if stream_plot is not None else None)
    if found.cv is not None:
        inputs.cv = read_json(found.cv)
        inputs.sources["cross-validation"] = str(found.cv.resolve())
        heat_map = found.cv.with_suffix(".png")
        if heat_map.is_file():
            inputs.images["cv_heatmap"] = heat_map.read_bytes()
    plot_missing(inputs)
    return inputs


def _read_run(inputs: ReportInputs, run: Path) -> None:
    inputs.sources["run directory"] = str(run.resolve())
    inputs.run_config = read_json(run / "config.json")
    for attr, name in (("metrics", "metrics.json"), ("history", "history.json"), ("split", "split.json")):
        if (run / name).is_file():
            setattr(inputs, attr, read_json(run / name))
    for key, name in RUN_IMAGES.items():
        if (run / name).is_file():
            inputs.images[key] = (run / name).read_bytes()


def _read_bundle(inputs: ReportInputs, bundle: Path, others: list[Path]) -> None:
    from export.bundle import load_bundle

    loaded = load_bundle(bundle)  # verified (schema, digest, hashes): the page describes a sound bundle
    inputs.manifest = loaded.manifest
    inputs.identity = {"digest": loaded.digest,
                       "signature": loaded.signature.to_json() if loaded.signature else None,
                       "unlisted": loaded.unlisted_files(), "checks_skipped": list(loaded.checks_skipped)}
    inputs.sources["bundle"] = str(bundle.resolve())
    parity_file = _parity_file(bundle)
    if parity_file is not None:
        inputs.parity = read_json(parity_file)
        inputs.sources["parity"] = str(parity_file.resolve())
    inputs.fits = fit_checks(inputs.manifest)
    from export.firmware_measure import read_results, results_path

    inputs.firmware = read_results(loaded)
    if inputs.firmware is not None:
        inputs.sources["firmware"] = str(results_path(bundle).resolve())
    if others:
        inputs.compared = [model_row(bundle, inputs.manifest, inputs.parity, inputs.fits)]
    for other in others:
        manifest = load_bundle(other).manifest
        parity = read_json(_parity_file(other)) if _parity_file(other) is not None else None
        inputs.compared.append(model_row(other, manifest, parity, fit_checks(manifest)))
        inputs.sources[f"bundle {other.name}"] = str(other.resolve())


def _parity_file(bundle: Path) -> Path | None:
    """``edgecnn parity``'s results: beside the bundle (``BUNDLE.parity.json``), or inside it where an
    older edgecnn wrote them."""
    from export.bundle import parity_results_path

    for path in (parity_results_path(bundle), bundle / PARITY_FILE):
        if path.is_file():
            return path
    return None


def _read_stream(inputs: ReportInputs, stream: Path, plot: Path | None) -> None:
    doc = read_json(stream)
    if not is_stream_result(doc):
        raise InputError(f"{stream}: not an `edgecnn stream --json` result (needs timing, events, decisions)")
    inputs.stream = doc
    inputs.sources["stream result"] = str(stream.resolve())
    if plot is not None and not plot.is_file():
        raise InputError(f"--stream-plot {plot}: no such file")
    plot = plot or stream.with_suffix(".png")
    if plot.is_file():
        inputs.images["stream_plot"] = plot.read_bytes()
        inputs.sources["stream plot"] = str(plot.resolve())


def fit_checks(manifest: dict) -> list[dict]:
    """Each TFLite model of a bundle (the files a device runs) against every built-in device profile.

    The same figures ``edgecnn stream --profile`` checks: flash = the model file plus the declared DSP
    backend's constant tables; RAM = the tensor arena plus the streaming runtime's buffers for
    256-sample blocks with that backend.
    """
    from edgecnn.config import SpectrogramConfig
    from firmware_sim import profiles
    from firmware_sim.dsp_backends import DeviceDSP

    cfg = SpectrogramConfig.from_dict(manifest["dsp"])
    dsp = DeviceDSP.resolve(manifest.get("device")).name
    footprint = manifest.get("footprint") or {}
    out = []
    for file, entry in (manifest.get("models") or {}).items():
        if entry.get("format") != "tflite" or entry.get("dtype") not in ("int8", "float32"):
            continue
        arena = entry.get("arena_bytes") or (footprint.get("arena_bytes_tflm") if entry["dtype"] == "int8" else None)
        if not arena:
            continue
        itemsize = 1 if (entry.get("input") or {}).get("dtype") in ("int8", "uint8") else 4
        buffers = profiles.runtime_buffer_bytes(cfg, block=256, input_itemsize=itemsize, dsp=dsp,
                                                n_classes=len(manifest.get("classes") or [0, 0]))
        for profile in profiles.BUILTIN.values():
            report = profiles.check_fit(profile, flash_bytes=entry["bytes"], arena_bytes=arena, buffers=buffers,
                                        tables=profiles.dsp_flash_bytes(cfg, dsp))
            out.append({"model": file, "dsp": dsp, **report.to_json()})
    return out


def model_row(bundle: Path, manifest: dict, parity: dict | None, fits: list[dict]) -> dict:
    """One bundle's headline figures, for comparing the models of a demo folder side by side."""
    file, entry = int8_entry(manifest)
    training = manifest.get("training") or {}
    model = (parity or {}).get("model_level") or {}
    variants = model.get("variants") or {}
    int8 = variants.get("tflite_int8/litert") or {}
    return {"bundle": bundle.name, "arch": training.get("arch"),
            "parameters": (entry or {}).get("parameters"), "macs": (entry or {}).get("macs"),
            "int8_bytes": (entry or {}).get("bytes"),
            "arena": (entry or {}).get("arena_bytes") or (manifest.get("footprint") or {}).get("arena_bytes_tflm"),
            "float_accuracy": (variants.get(model.get("reference")) or {}).get("accuracy"),
            "int8_accuracy": int8.get("accuracy"), "agreement": (int8.get("vs_reference") or {}).get("agreement"),
            "gate": ((parity or {}).get("gate") or {}).get("passed"),
            "fits": [f["profile"]["name"] for f in fits if f["model"] == file and f["fits"]]}
