"""The bundle's and the device's sections: parity, footprint and device fit, a stream, the bundle's
identity (digest, signature), the DSP configuration.

Data functions only (see :mod:`edgecnn.report.sections`): ReportInputs in, plain data or Missing out.
"""

from __future__ import annotations

from edgecnn.report.read import ReportInputs
from edgecnn.report.sections import Missing, is_number, pick

#: How many layers the quantisation-debug table lists (those with the largest rmse / scale).
WORST_LAYERS = 10
#: The figures each section shows from a JSON result (absent ones show as '-').
STREAM_PARITY_KEYS = ("description", "seconds", "decision_agreement", "state_agreement", "same_events")
STREAM_MODEL_KEYS = ("decisions", "decision_accuracy", "false_alarms", "false_alarms_per_hour", "missed",
                     "class_changes", "detection_delay_s", "realtime_factor")
LAYER_KEYS = ("op", "tensor", "rmse_over_scale", "max_abs_error", "scale")
STREAM_KEYS = ("source", "model", "runtime", "dsp", "block", "decisions", "invalid_decisions", "state", "fit",
               "peak_rss_mb")
TIMING_KEYS = ("stream_s", "processing_s", "realtime_factor", "cpu_load", "block_ms_p50", "block_ms_p99",
               "block_ms_worst", "deadline_misses", "decision_latency_ms_p50", "decision_latency_ms_worst")
MODEL_KEYS = ("format", "dtype", "bytes", "parameters", "macs", "arena_bytes")
C_ARRAY_KEYS = ("source", "header", "symbol", "alignment")
FIRMWARE_KEYS = ("target", "kernels", "dsp", "flash_bytes", "ram_bytes", "model_bytes", "arena_bytes",
                 "arena_used_bytes", "dsp_state_bytes", "instructions_per_dsp_frame", "instructions_per_inference",
                 "instructions_note")
EVENT_KEYS = ("time_s", "sample_index", "decision", "from", "to", "p_smoothed")
#: Words of JSON keys written as people write them (``stft_scratch`` -> ``STFT scratch``).
ACRONYMS = {"fft": "FFT", "stft": "STFT", "ram": "RAM", "dsp": "DSP", "dma": "DMA"}


def parity(inputs: ReportInputs) -> dict | Missing:
    """The parity gate, each format against the float reference, the stream level, the worst int8 layers."""
    result = inputs.parity
    if not result:
        if inputs.manifest:
            return Missing("No parity results beside the bundle (BUNDLE.parity.json); run",
                           "edgecnn parity BUNDLE --data DATA")
        return Missing("No bundle found, so no parity figures; export one and check it:",
                       "edgecnn export RUN_DIR --out BUNDLE && edgecnn parity BUNDLE --data DATA")
    model = result.get("model_level") or {}
    variants = model.get("variants") or {}
    reference = model.get("reference")
    ref_acc = (variants.get(reference) or {}).get("accuracy")
    rows = []
    for name, v in variants.items():
        errors = v.get("vs_reference") or {}
        drop = ref_acc - v["accuracy"] if is_number(ref_acc) and is_number(v.get("accuracy")) else None
        rows.append({"name": name, "is_reference": name == reference, "runtime": v.get("runtime"),
                     "dtype": v.get("dtype"), "accuracy": v.get("accuracy"), "drop": drop,
                     "over_limit": drop is not None and v.get("dtype") == "int8"
                     and drop > (result.get("max_drop") or 0) + 1e-12,
                     "agreement": errors.get("agreement"), "max_abs_error": errors.get("max_abs_error"),
                     "rmse": errors.get("rmse"), "cosine_similarity": errors.get("cosine_similarity"),
                     "ms_per_window": v.get("ms_per_window")})
    stream_level = result.get("stream_level") or {}
    streams = [{"index": i + 1, **pick(s, STREAM_PARITY_KEYS),
                "models": [{"dtype": dtype, **pick(m, STREAM_MODEL_KEYS)}
                           for dtype, m in (s.get("variants") or {}).items()]}
               for i, s in enumerate(stream_level.get("streams") or [])]
    layers = [pick(r, LAYER_KEYS) for r in sorted(result.get("debug_layers") or [],
                                                   key=lambda r: -(r.get("rmse_over_scale") or 0))[:WORST_LAYERS]]
    gate = result.get("gate") or {}
    return {"gate": {"passed": gate.get("passed"), "failures": gate.get("failures") or []},
            "max_drop": result.get("max_drop"), "min_agreement": result.get("min_agreement"), "reference": reference,
            "n_windows": model.get("n_windows"), "selection": model.get("selection"), "data": result.get("data"),
            "variants": rows, "stream_runtime": stream_level.get("runtime"), "streams": streams,
            "timelines": inputs.images.get("parity_timelines"), "timelines_note": inputs.notes.get("parity_timelines"),
            "layers": layers}


def footprint(inputs: ReportInputs) -> dict | Missing:
    """Every model file's size and cost, each TFLite model against the device profiles, the device's buffers."""
    manifest = inputs.manifest
    if not manifest:
        return Missing("No bundle found; export one:", "edgecnn export RUN_DIR --out BUNDLE")
    fp = manifest.get("footprint") or {}
    fits = [{"model": f["model"], "profile": f["profile"]["name"], "description": f["profile"].get("description"),
             "flash_needed": f["flash_needed"], "flash_bytes": f["profile"]["flash_bytes"],
             "flash_share": f["flash_needed"] / f["profile"]["flash_bytes"],
             "ram_needed": f["ram_needed"], "ram_bytes": f["profile"]["ram_bytes"],
             "ram_share": f["ram_needed"] / f["profile"]["ram_bytes"], "fits": f["fits"]} for f in inputs.fits]
    device = dict(fp.get("device_buffers") or {})
    working = device.pop("dsp_working_memory", None) or {}
    models = manifest.get("models") or {}
    return {"models": [{"file": file, **pick(entry, MODEL_KEYS)} for file, entry in models.items()],
            "fits": fits, "dsp": inputs.fits[0]["dsp"] if inputs.fits else None,
            "flash_bytes": fp.get("flash_bytes"), "arena_bytes": fp.get("arena_bytes_tflm"),
            "arena_head_bytes": fp.get("arena_head_bytes"), "arena_tail_bytes": fp.get("arena_tail_bytes"),
            "arena_note": fp.get("arena_note"),
            "buffers": [{"name": label(key.removesuffix("_bytes")), "bytes": value} for key, value in device.items()
                        if key.endswith("_bytes") and key != "total_bytes" and "flash" not in key],
            "buffers_total": device.get("total_bytes"), "tables_flash_bytes": device.get("dsp_tables_flash_bytes"),
            "block_samples": device.get("block_samples"), "dsp_backend": device.get("dsp_backend"),
            "working_memory": _working_memory(working),
            "c_array": pick(manifest["c_array"], C_ARRAY_KEYS) if manifest.get("c_array") else None,
            "firmware": _firmware(manifest, inputs.firmware)}


def _firmware(manifest: dict, measured: dict | None) -> dict:
    """The generated C library: its folder (or why there is none) and, when measured, the figures."""
    doc = manifest.get("firmware") or {}
    return {"folder": doc.get("folder"), "reason": doc.get("reason"),
            "measured": pick(measured, FIRMWARE_KEYS) if measured else None,
            "golden": (measured or {}).get("golden")}


def label(key: str) -> str:
    """A JSON key as words: ``stft_scratch`` -> ``STFT scratch``, ``ram_total`` -> ``RAM total``."""
    return " ".join(ACRONYMS.get(word, word) for word in key.split("_"))


def _working_memory(per_backend: dict[str, dict[str, int]]) -> dict | None:
    """Each DSP backend's per-frame buffers (RAM) and constant tables (flash) as rows of named buffers.

    ``export.footprint.device_buffers`` records ``firmware_sim.dsp_backends.working_memory_bytes`` per
    backend: buffers, then tables (their names say ``table``), then ``ram_total`` and ``flash_total``.
    """
    if not per_backend:
        return None
    names = list(dict.fromkeys(name for buffers in per_backend.values() for name in buffers))
    ram = [n for n in names if "table" not in n and not n.endswith("_total")]
    flash = [n for n in names if "table" in n]
    rows = [{"name": label(n), "memory": memory, "total": n.endswith("_total"),
             "bytes": [buffers.get(n) for buffers in per_backend.values()]}
            for memory, group in (("RAM", [*ram, "ram_total"]), ("flash", [*flash, "flash_total"])) for n in group]
    return {"backends": list(per_backend), "rows": rows}


def stream(inputs: ReportInputs) -> dict | Missing:
    """An ``edgecnn stream --json`` result: timing, decisions, faults, events and the stream plot."""
    result = inputs.stream
    if not result:
        return Missing("No stream result given; make one and pass it:",
                       "edgecnn stream BUNDLE --json stream.json --plot stream.png; "
                       "edgecnn report BUNDLE --stream-json stream.json")
    return {**pick(result, STREAM_KEYS), "timing": pick(result.get("timing") or {}, TIMING_KEYS),
            "faults": {k: v for k, v in (result.get("faults") or {}).items() if v},
            "events": [pick(e, EVENT_KEYS) for e in result.get("events") or []],
            "plot": inputs.images.get("stream_plot"),
            "timeline": inputs.images.get("stream_timeline"), "timeline_note": inputs.notes.get("stream_timeline")}


def integrity(inputs: ReportInputs) -> dict | Missing:
    """Which bundle this is and what vouches for it: the digest, the signature, and whether the parity
    and stream results shown were computed with this very bundle (they record its digest)."""
    identity = inputs.identity
    if not identity:
        return Missing("No bundle found, so no bundle digest; export one:", "edgecnn export RUN_DIR --out BUNDLE")
    results = []
    for what, result in (("parity results", inputs.parity), ("stream result", inputs.stream)):
        if result:
            recorded = result.get("bundle_digest")
            results.append({"what": what, "digest": recorded,
                            "same": None if recorded is None else recorded == identity["digest"]})
    return {**identity, "results": results,
            "digest_macro": ((inputs.manifest or {}).get("c_array") or {}).get("digest_macro")}


def dsp(inputs: ReportInputs) -> dict | Missing:
    """The DSP configuration every side computes features with (the bundle's manifest, else the run's)."""
    config = inputs.dsp
    if not config:
        return Missing("No DSP configuration found.", "edgecnn inspect BUNDLE")
    from edgecnn.config import SpectrogramConfig

    cfg = SpectrogramConfig.from_dict(config)
    window = config.get("window")
    return {"fs": cfg.fs, "window_samples": cfg.window_samples, "window_duration_s": cfg.window_duration_s,
            "nperseg": cfg.nperseg, "noverlap": cfg.noverlap, "hop": cfg.hop, "frame_period_s": cfg.frame_period_s,
            "window": " ".join(str(w) for w in window) if isinstance(window, list) else str(window),
            "detrend": cfg.detrend, "n_freq": cfg.n_freq, "n_frames": cfg.n_frames, "transform": cfg.transform,
            "log_floor_db": cfg.log_floor_db if cfg.transform == "log" else None,
            "norm_mean": list(cfg.norm_mean), "norm_std": list(cfg.norm_std),
            "feature_version": config.get("feature_version")}
