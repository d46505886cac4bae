"""The generated firmware on an emulated Cortex-M4: golden windows in, every stage checked, footprint measured.

``measure(bundle, firmware_dir)`` cross-compiles the generated library, TFLM (CMSIS-NN kernels) and
the bundle's model with the example main loop (``export.firmware_build``), runs the golden windows
through it on QEMU's MPS2 AN386 board (each window a fresh stream: its first decision is the
window's image) and compares what the board computed with Python:

- float features against ``golden.npz`` (``edgecnn.dsp``): within ``FEATURE_TOL_STEPS`` of one int8
  input step (also reported relative to the image's largest |feature|);
- the int8 input tensor against the bundle's quantiser (``TensorSpec.quantize``) of the board's
  own features (byte for byte), and against golden's (differences only at rounding boundaries);
- the int8 output against tflite-micro's Python runtime on the board's input (byte for byte) and
  against golden's.

It also records the footprint from the link (flash = ``.text`` + ``.rodata``; RAM = ``.data`` +
``.bss``, which hold the arena and the DSP state, less the example loop's own I/O buffers; stack
and heap are not counted) and QEMU's
instruction counts per DSP frame and per inference (``-icount shift=0``: instructions, not
cycles). ``write_results`` puts them beside the bundle (``BUNDLE_DIR.firmware.json``), where
``inspect``, ``stream --profile`` and the report read them (``read_results``).

Host-side tooling: no TensorFlow (tflite-micro's Python runtime for the outputs).
"""

from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from export import firmware_build

RESULTS_FORMAT = "edgecnn-firmware-measurements"
#: The example main loop's own buffers (a sample block, --dump's columns): an application has its own.
EXAMPLE_IO_SYMBOLS = ("(anonymous namespace)::g_block", "main::columns")
RESULTS_SUFFIX = ".firmware.json"
#: Float features (float32 FFTs against numpy's float64): held to this fraction of one int8 input
#: step (the input scale), the unit the model sees; the error relative to the image's largest
#: |feature| is reported too.
FEATURE_TOL_STEPS = 0.02
INSTRUCTIONS_NOTE = ("instructions counted by QEMU (-icount shift=0, MPS2 timer ticks x 40), not cycles: a "
                     "Cortex-M4 takes more than one cycle for loads, branches and multi-cycle instructions")


def results_path(bundle_dir: str | Path) -> Path:
    """Beside the bundle, never inside it (the digest and the signature cover what is inside)."""
    bundle_dir = Path(bundle_dir).absolute()
    return bundle_dir.parent / f"{bundle_dir.name}{RESULTS_SUFFIX}"


def read_results(bundle) -> dict[str, Any] | None:
    """The measurements of this very bundle (same digest), or None."""
    path = results_path(bundle.path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != RESULTS_FORMAT or doc.get("bundle_digest") != bundle.digest:
        return None
    return doc


def write_results(bundle_dir: str | Path, result: dict[str, Any]) -> Path:
    path = results_path(bundle_dir)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return path


def parse_main_output(text: str) -> dict[str, Any]:
    """What ``edgecnn_main`` printed: header fields, decisions, events, dumps and totals."""
    out: dict[str, Any] = {"decisions": [], "events": [], "columns": [], "input": [], "output": []}
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "bundle":
            out["digest"] = parts[1]
            out.update({parts[i]: int(parts[i + 1]) for i in range(2, len(parts) - 1, 2)})
        elif parts[0] == "decision":
            out["decisions"].append((int(parts[1]), int(parts[2]), parts[3]))
        elif parts[0] == "event":
            out["events"].append((int(parts[1]), int(parts[2]), parts[3], parts[4], float(parts[5])))
        elif parts[0] in ("columns", "input", "output"):
            data = bytes.fromhex(parts[1]) if len(parts) > 1 else b""
            out[parts[0]].append(np.frombuffer(data, dtype=np.float32 if parts[0] == "columns" else np.int8).copy())
        elif parts[0] == "done":
            out.update({parts[i]: int(parts[i + 1]) for i in range(1, len(parts) - 1, 2)})
    return out


def build_image(bundle, firmware_dir: Path) -> firmware_build.McuImage:
    """The example main loop with the bundle's library, TFLM and model, for the MPS2 AN386 board."""
    out = firmware_build.build_dir() / f"mcu-{bundle.digest[:16]}"
    return firmware_build.build_mcu_image(firmware_dir, [firmware_dir / "edgecnn_main.cc"], out,
                                          defines=("-DEDGECNN_MPS2_TIMER",), name="edgecnn_main.elf")


def run_stream(image: firmware_build.McuImage, samples: np.ndarray, *, args: tuple[str, ...] = ()) -> dict[str, Any]:
    """Stream float32 samples through the board (read from a host file over semihosting)."""
    data = image.elf.parent / f"samples-{len(samples)}.f32"
    np.ascontiguousarray(samples, dtype="<f4").tofile(data)
    return parse_main_output(firmware_build.run_qemu(image.elf, [str(data), *args]))


def measure(bundle, firmware_dir: str | Path) -> dict[str, Any]:
    """Build, run the golden windows on QEMU, compare every stage, measure; returns the result."""
    from export.golden import run_tflm

    firmware_dir = Path(firmware_dir)
    image = build_image(bundle, firmware_dir)
    golden, cfg, entry = bundle.golden(), bundle.cfg, bundle.model("tflite", "int8")
    windows = golden["windows"]
    run = run_stream(image, windows.reshape(-1), args=("--reset-every", str(cfg.window_samples), "--dump"))
    rows, cols = cfg.input_shape[0], cfg.input_shape[1]
    n = len(windows)
    if len(run["input"]) != n or len(run["columns"]) != n:
        raise firmware_build.ConfigError(f"the board took {len(run['input'])} decisions on {n} golden windows")
    features = np.stack([c.reshape(cols, rows).T for c in run["columns"]])
    inputs = np.stack([x.reshape(rows, cols) for x in run["input"]])
    outputs = np.stack(run["output"])
    expected = golden["features"][..., 0]
    error = np.abs(features - expected)
    feature_error = float(np.max(error / np.max(np.abs(expected), axis=(1, 2), keepdims=True)))
    feature_steps = float(np.max(error) / entry.input.scale)
    python_outputs = run_tflm(bundle.model_path(entry), inputs[..., None])
    golden_inputs = golden["input_int8"][..., 0]
    checks = {
        "windows": n,
        "features_max_error_rel": feature_error,
        "features_max_error_steps": feature_steps,
        "features_within_tolerance": feature_steps <= FEATURE_TOL_STEPS,
        "input_int8_equal_quantiser": bool(np.array_equal(inputs, entry.input.quantize(features))),
        "input_int8_differences_from_golden": int(np.count_nonzero(inputs != golden_inputs)),
        "output_int8_equal_tflite_micro": bool(np.array_equal(outputs, python_outputs)),
        "output_int8_equal_golden": bool(np.array_equal(outputs, golden["output_int8"])),
    }
    checks["all_equal"] = bool(checks["features_within_tolerance"] and checks["input_int8_equal_quantiser"]
                               and checks["output_int8_equal_tflite_micro"])
    sections = image.sections
    flash = sections.get(".text", 0) + sections.get(".rodata", 0)
    symbols = firmware_build.symbol_sizes(image.elf)
    example_io = sum(symbols.get(name, 0) for name in EXAMPLE_IO_SYMBOLS)
    ram = sections.get(".data", 0) + sections.get(".bss", 0) - example_io
    model_bytes = bundle.model_path(entry).stat().st_size
    return {
        "format": RESULTS_FORMAT,
        "bundle_digest": bundle.digest,
        "target": "Cortex-M4F (qemu-system-arm -M mps2-an386), -O2 -mfloat-abi=hard -mfpu=fpv4-sp-d16",
        "toolchain": _version(["arm-none-eabi-gcc", "--version"]),
        "qemu": _version(["qemu-system-arm", "--version"]),
        "host": platform.machine(),
        "kernels": "cmsis-nn",
        "dsp": "float32 (arm_rfft_fast_f32)",
        "flash_bytes": flash,
        "ram_bytes": ram,
        "example_io_bytes": example_io,
        "sections": {k: v for k, v in sections.items() if not k.startswith((".debug", ".comment"))},
        "model_bytes": model_bytes,
        "arena_bytes": run["arena_bytes"],
        "arena_used_bytes": run["arena_used"],
        "dsp_state_bytes": run["dsp_state_bytes"],
        "decider_state_bytes": run["decider_state_bytes"],
        "instructions_per_dsp_frame": round(run["dsp_ticks"] * firmware_build.INSTRUCTIONS_PER_TICK / run["frames"]),
        "instructions_per_inference": round(run["model_ticks"] * firmware_build.INSTRUCTIONS_PER_TICK / run["invokes"]),
        "instructions_note": INSTRUCTIONS_NOTE,
        "ram_note": ("RAM = .data + .bss of the linked application without the example main loop's own I/O "
                     "buffers (its sample block and --dump's columns, example_io_bytes): the TFLM arena, the DSP "
                     "and decision state, TFLM's interpreter and newlib's own state; stack and heap not counted"),
        "golden": checks,
    }


def format_result(result: dict[str, Any]) -> str:
    g = result["golden"]
    return "\n".join([
        f"Cortex-M4 (QEMU mps2-an386, {result['kernels']} kernels, {result['dsp']})",
        f"  flash {result['flash_bytes']:,} B (.text + .rodata, model {result['model_bytes']:,} B)",
        f"  RAM   {result['ram_bytes']:,} B (.data + .bss: arena {result['arena_bytes']:,} B, "
        f"used {result['arena_used_bytes']:,} B; DSP state {result['dsp_state_bytes']:,} B)",
        f"  instructions per DSP frame {result['instructions_per_dsp_frame']:,}, per inference "
        f"{result['instructions_per_inference']:,} (QEMU instruction count, not cycles)",
        f"  golden windows {g['windows']}: features max error {g['features_max_error_rel']:.1e} of the image's "
        f"largest ({g['features_max_error_steps']:.1e} int8 steps); int8 input = quantiser "
        f"{g['input_int8_equal_quantiser']} ({g['input_int8_differences_from_golden']} boundary differences "
        f"from golden); int8 output = tflite-micro {g['output_int8_equal_tflite_micro']}, "
        f"= golden {g['output_int8_equal_golden']}",
    ])


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
    except (OSError, IndexError):
        return "unknown"
