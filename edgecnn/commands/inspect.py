"""``edgecnn inspect BUNDLE_DIR [--json [OUT]]``: what a bundle holds and what it needs on a device.

Reads the bundle with the TF-free reader (hashes verified); never imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from edgecnn.commands import add_require_signature_argument


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "inspect", help="show a bundle's classes, DSP config, models and footprint",
        description="Verify a bundle and summarise it: classes, DSP config, each model's size, "
                    "quantisation, parameters and MACs, and the device footprint.")
    parser.add_argument("bundle", metavar="BUNDLE_DIR", help="bundle folder written by `edgecnn export`")
    add_require_signature_argument(parser)
    parser.add_argument("--json", nargs="?", const="-", default=None, metavar="OUT",
                        help="write the summary as JSON to OUT (or stdout when OUT is omitted or '-')")
    parser.set_defaults(func=run)


def summary(bundle) -> dict[str, Any]:
    """The machine-readable summary ``--json`` writes (the same figures as the text)."""
    cfg = bundle.cfg
    manifest = bundle.manifest
    return {
        "bundle": str(bundle.path),
        "format": manifest["format"],
        "schema_version": manifest["schema_version"],
        "created": manifest.get("created"),
        "bundle_digest": bundle.digest,
        "signature": bundle.signature.to_json() if bundle.signature else None,
        "unlisted_files": bundle.unlisted_files(),
        "checks_skipped": list(bundle.checks_skipped),
        "classes": bundle.classes,
        "dsp": {
            "fs": cfg.fs, "nperseg": cfg.nperseg, "noverlap": cfg.noverlap, "hop": cfg.hop,
            "window": list(cfg.window) if isinstance(cfg.window, tuple) else cfg.window,
            "detrend": cfg.detrend, "window_samples": cfg.window_samples,
            "transform": cfg.transform, "log_floor_db": cfg.log_floor_db,
            "normalisation": ("none" if not cfg.is_normalised else
                              "per-bin" if len(cfg.norm_mean) > 1 else "global"),
            "feature_version": manifest["dsp"].get("feature_version"),
            "input_shape": list(manifest["input"]["shape"]), "layout": manifest["input"].get("layout"),
            "window_duration_s": cfg.window_duration_s, "frame_period_s": cfg.frame_period_s,
        },
        "models": [{"file": e.file, "format": e.format, "dtype": e.dtype, "bytes": e.bytes,
                    "input": e.input.to_dict(), "output": e.output.to_dict(),
                    "parameters": e.parameters, "macs": e.macs, "arena_bytes": e.arena_bytes,
                    "sha256": e.sha256} for e in bundle.models.values()],
        "device": bundle.device,
        "footprint": bundle.footprint,
        "ram_total_bytes": _ram_total(bundle.footprint),
        "firmware": manifest.get("firmware"),
        "firmware_measured": _measured(bundle),
        "training": manifest.get("training"),
        "calibration": manifest.get("calibration"),
        "tool_versions": manifest.get("tool_versions"),
    }


def _measured(bundle) -> dict | None:
    from export.firmware_measure import read_results

    return read_results(bundle)


def _firmware_lines(info: dict[str, Any]) -> list[str]:
    doc = info.get("firmware")
    if not isinstance(doc, dict):
        return []
    if not doc.get("folder"):
        return [f"firmware not generated: {doc.get('reason', '')}"]
    lines = [f"firmware {doc['folder']}/ (C99 DSP and decisions, TFLM glue; `edgecnn firmware --measure` "
             "measures it on an emulated Cortex-M4)"]
    m = info.get("firmware_measured")
    if m:
        lines += [f"  measured on {m['target']}, {m['kernels']} kernels:",
                  f"  flash (.text + .rodata)  {m['flash_bytes']:>10,d} bytes",
                  f"  RAM (.data + .bss)       {m['ram_bytes']:>10,d} bytes (arena {m['arena_bytes']:,}, "
                  f"used {m['arena_used_bytes']:,}; DSP state {m['dsp_state_bytes']:,})",
                  f"  per inference            {m['instructions_per_inference']:>10,d} instructions",
                  f"  per DSP frame            {m['instructions_per_dsp_frame']:>10,d} instructions",
                  f"  golden windows: all stages as Python {m['golden']['all_equal']}",
                  f"  note: {m['instructions_note']}"]
    return lines


def _signature_text(signature: dict | None) -> str:
    if not signature:
        return "no (unsigned bundle: its digest is checked, not who made it)"
    if signature["trusted_key"]:
        return f"yes, ed25519 key {signature['key_id']}, verified against the required public key"
    return (f"yes, ed25519 key {signature['key_id']}, signature valid (the key itself is not checked: "
            "pass --require-signature PUBKEY)")


def _quant(spec: dict) -> str:
    if spec["scale"] is None:
        return spec["dtype"]
    return f"{spec['dtype']} scale={spec['scale']:.6g} zp={spec['zero_point']}"


def _num(value: Any) -> str:
    # A hand-edited manifest may hold anything here: show it rather than fail.
    if value is None:
        return "-"
    return f"{value:,d}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def _buffers(fp: dict) -> dict:
    buffers = fp.get("device_buffers")
    return buffers if isinstance(buffers, dict) else {}


def _ram_total(fp: dict) -> int | None:
    arena, buffers = fp.get("arena_bytes_tflm"), _buffers(fp).get("total_bytes")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (arena, buffers)):
        return None
    return arena + buffers


def render(info: dict[str, Any]) -> str:
    """Human-readable text of :func:`summary`."""
    dsp = info["dsp"]
    lines = [
        f"bundle   {info['bundle']}  ({info['format']} v{info['schema_version']}, created {info['created']})",
        f"digest   {info['bundle_digest']}",
        f"signed   {_signature_text(info.get('signature'))}",
        f"classes  {', '.join(info['classes'])}",
        f"dsp      fs {dsp['fs']:g} Hz, nperseg {dsp['nperseg']}, noverlap {dsp['noverlap']} "
        f"(hop {dsp['hop']}), "
        f"window {dsp['window']}, detrend {dsp['detrend']}",
        f"         window {dsp['window_samples']} samples ({dsp['window_duration_s']:.4g} s), "
        f"transform {dsp['transform']}"
        + (f" (floor {dsp['log_floor_db']:g} dB)" if dsp["transform"] == "log" else "")
        + f", normalisation {dsp['normalisation']}, feature_version {dsp['feature_version']}",
        f"input    {dsp['input_shape']} {dsp['layout']}",
        "models",
        f"  {'file':22s} {'weights':8s} {'bytes':>11s} {'params':>10s} {'MACs':>12s} {'arena':>9s}  "
        "input -> output",
    ]
    for m in info["models"]:
        lines.append(f"  {m['file']:22s} {m['dtype']:8s} {m['bytes']:>11,d} {_num(m['parameters']):>10s} "
                     f"{_num(m['macs']):>12s} {_num(m['arena_bytes']):>9s}  "
                     f"{_quant(m['input'])} -> {_quant(m['output'])}")
    fp = info["footprint"]
    buffers = _buffers(fp)
    lines += [
        "footprint",
        f"  flash (int8 model)      {_num(fp.get('flash_bytes')):>10s} bytes",
        f"  tensor arena (TFLM)     {_num(fp.get('arena_bytes_tflm')):>10s} bytes "
        f"(head {_num(fp.get('arena_head_bytes'))}, tail {_num(fp.get('arena_tail_bytes'))})",
        f"  ring buffer             {_num(buffers.get('ring_buffer_bytes')):>10s} bytes "
        f"({buffers.get('block_samples')}-sample blocks)",
        f"  STFT scratch            {_num(buffers.get('stft_scratch_bytes')):>10s} bytes",
        f"  rolling image           {_num(buffers.get('rolling_image_bytes')):>10s} bytes",
        *([f"  envelope history        {_num(buffers['envelope_history_bytes']):>10s} bytes"]
          if buffers.get("envelope_history_bytes") is not None else []),
        f"  RAM total (arena + DSP) {_num(info['ram_total_bytes']):>10s} bytes",
        *([f"  DSP tables (flash)      {_num(buffers['dsp_tables_flash_bytes']):>10s} bytes "
           f"({buffers.get('dsp_backend')})"] if buffers.get("dsp_tables_flash_bytes") is not None else []),
        f"  note: {fp.get('arena_note', '')}",
    ]
    lines += _firmware_lines(info)
    device = info.get("device")
    adc = (device or {}).get("adc")
    lines.append("device   " + (f"DSP {device.get('dsp')}, " + (
        f"ADC +/-{adc['full_scale']:g} {adc['units']} {adc['bits']}-bit (noise {adc['noise_lsb']:g} LSB)"
        if adc else "no ADC model") + (f", q15 golden vectors {device['golden_q15']}" if device.get("golden_q15")
                                        else "") if device else "not declared (numpy float DSP, no ADC)"))
    if info.get("unlisted_files"):
        lines.append(f"unlisted {', '.join(info['unlisted_files'])} (not in the manifest: never read, not "
                     "covered by the digest or a signature)")
    training = info.get("training")
    if isinstance(training, dict) and training:
        keys = ", ".join(f"{k} {v}" for k, v in training.items() if not isinstance(v, (dict, list)))
        lines.append(f"training {keys}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from export.bundle import load_bundle

    info = summary(load_bundle(args.bundle, require_signature=args.require_signature))
    if args.json is None:
        print(render(info))
    elif args.json == "-":
        json.dump(info, sys.stdout, indent=2)
        print()
    else:
        from edgecnn.fileio import write_json

        write_json(Path(args.json), info)
        print(render(info))
    return 0
