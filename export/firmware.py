"""The device library generated per bundle: ``firmware/`` (C99 DSP and decisions, TFLM glue).

``firmware_sources(...)`` renders the package's templates (``export/firmware_templates``) with the
bundle's values, each computed by the one Python definition it mirrors:

- ``edgecnn_config.h``: sizes and framing from ``SpectrogramConfig``; the analysis window divided
  by its sum (``edgecnn.dsp._scaled_window``) or the envelope's band bins, decimation and Hann
  window (``edgecnn.dsp._envelope_window``); per-row scale and offset of the feature transform
  and the normalisation (``norm_mean``/``norm_std``); the int8 input quantiser as 255 float32
  thresholds found by bisection on the bundle's own quantiser (``TensorSpec.quantize``), so C and
  Python agree on every float32 feature; the output dequantisation; the decision policy
  (``firmware_sim.decisions.DecisionPolicy``: the manifest's, else the default the device uses);
  the TFLM arena; the bundle digest (``EDGECNN_BUNDLE_DIGEST``);
- ``edgecnn_dsp.{c,h}``: the stages, generic over those constants (static buffers, no malloc);
- ``edgecnn_model.{cc,h}``: TFLM glue with a ``MicroMutableOpResolver`` of exactly the model's
  operators (read from the .tflite by ``export.tflite_reader``), and ``edgecnn_model_data.{cc,h}``;
- ``edgecnn_main.cc``: an example main loop (samples in, decisions and events out) and
  ``edgecnn_vectors.c``: the Cortex-M vector table the MPS2 AN386 board model boots from.

Both features are expressed: the spectrogram and the envelope spectrum (``cfg.feature``), with
either transform and level. A bundle the generator cannot express (an unknown DSP parameter, an FFT
length ``arm_rfft_fast_f32`` does not take, an operator without a kernel registration) is refused
with one ``ConfigError`` line. Export writes the folder into the bundle (listed under
``generated``: the header embeds the digest); ``edgecnn firmware BUNDLE --out DIR`` writes it
anywhere. Device side: numpy, jinja2 and the TF-free bundle modules only.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn.config import SpectrogramConfig
from edgecnn.dsp import _envelope_window, _scaled_window
from edgecnn.errors import ConfigError
from export import carray
from export.bundle import C_DIGEST_MACRO, TensorSpec

FIRMWARE_DIR = "firmware"
#: Bumped when the generated sources change meaning; the manifest's ``firmware`` section records it.
GENERATOR_VERSION = 1
#: The generated header that embeds the bundle digest, and its role under the manifest's ``generated``.
CONFIG_HEADER = "edgecnn_config.h"
CONFIG_ROLE = "firmware_config"
#: Manifest key of the decision policy (firmware_sim.decisions.DecisionPolicy fields), when exported.
POLICY_KEY = "decision_policy"
#: Files copied unchanged from the templates folder.
STATIC_FILES = ("edgecnn_dsp.c", "edgecnn_dsp.h", "edgecnn_model.h", "edgecnn_vectors.c")
#: Rendered templates: output name -> template name.
TEMPLATES = {CONFIG_HEADER: "edgecnn_config.h.j2", "edgecnn_model.cc": "edgecnn_model.cc.j2",
             "edgecnn_main.cc": "edgecnn_main.cc.j2"}
MODEL_DATA_STEM = "edgecnn_model_data"
#: The FFT lengths arm_rfft_fast_f32 takes.
RFFT_FAST_LENGTHS = (32, 64, 128, 256, 512, 1024, 2048, 4096)
#: schema.fbs BuiltinOperator -> MicroMutableOpResolver method (the builtins a bundle's CNNs use).
RESOLVER_METHODS = {
    0: "AddAdd", 1: "AddAveragePool2D", 2: "AddConcatenation", 3: "AddConv2D", 4: "AddDepthwiseConv2D",
    6: "AddDequantize", 9: "AddFullyConnected", 14: "AddLogistic", 17: "AddMaxPool2D", 18: "AddMul",
    19: "AddRelu", 21: "AddRelu6", 22: "AddReshape", 25: "AddSoftmax", 34: "AddPad", 39: "AddTranspose",
    40: "AddMean", 43: "AddSqueeze", 45: "AddStridedSlice", 70: "AddExpandDims", 74: "AddSum",
    114: "AddQuantize", 117: "AddHardSwish",
}
#: Declared device DSP backends (manifest ``device.dsp``) the generated float32 path implements.
FLOAT_BACKENDS = ("numpy", "cmsis-f32")
#: DSP config keys and the values this generator expresses (None: any value the config validates).
EXPRESSIBLE = {"feature": ("spectrogram", "envelope"), "level": ("none", "column_mean"),
               "transform": ("magnitude", "log"), "detrend": ("constant", "none")}


@dataclasses.dataclass(frozen=True)
class FirmwareInputs:
    """What the generator reads from a bundle (or from an export in progress)."""

    cfg: SpectrogramConfig
    dsp_doc: dict[str, Any]
    """The manifest's ``dsp`` section as written (to refuse parameters this generator does not know)."""
    classes: list[str]
    digest: str
    input_spec: TensorSpec
    output_spec: TensorSpec
    arena_bytes: int
    model: bytes
    policy: dict[str, Any] | None = None
    device: dict[str, Any] | None = None
    """The manifest's ``device`` section (the declared DSP backend and ADC), if any."""


def check_expressible(cfg: SpectrogramConfig, dsp_doc: dict[str, Any], device: dict[str, Any] | None = None) -> None:
    """Refuse (one ConfigError line) a DSP config the generated C cannot compute exactly, or a
    declared device DSP it does not implement (``device``: the manifest's ``device`` section)."""
    declared = (device or {}).get("dsp")
    if declared not in (None, *FLOAT_BACKENDS):
        raise ConfigError(f"the bundle declares the {declared} device DSP; the firmware generator writes the "
                          f"float32 path only (declared {', '.join(FLOAT_BACKENDS)} or nothing)")
    known = {f.name for f in dataclasses.fields(SpectrogramConfig)} | {"feature_version"}
    for key, value in dsp_doc.items():
        if key not in known:
            raise ConfigError(f"the firmware generator does not know DSP parameter {key!r}; upgrade edgecnn")
        allowed = EXPRESSIBLE.get(key)
        if allowed is not None and value not in allowed:
            raise ConfigError(f"the firmware generator cannot express {key}={value!r} yet (it handles "
                              f"{key} in {list(allowed)}); use the Python device runtime (edgecnn stream)")
    lengths = {"nperseg": cfg.nperseg}  # arm_rfft_fast_f32 (and arm_cfft_f32 for the envelope's band)
    if cfg.feature == "envelope":
        lengths["envelope_nfft"] = cfg.envelope_nfft
    for name, value in lengths.items():
        if value not in RFFT_FAST_LENGTHS:
            raise ConfigError(f"the firmware generator needs {name} in {list(RFFT_FAST_LENGTHS)} "
                              f"(arm_rfft_fast_f32), the bundle has {value}")


def resolver_methods(operators: tuple[int | str, ...]) -> list[str]:
    """The MicroMutableOpResolver calls for a model's operators (each once, in file order)."""
    methods = []
    for op in operators:
        method = RESOLVER_METHODS.get(op) if isinstance(op, int) else None
        if method is None:
            raise ConfigError(f"the firmware generator has no TFLM kernel registration for operator {op!r} "
                              f"(schema.fbs BuiltinOperator); known: {sorted(RESOLVER_METHODS)}")
        if method not in methods:
            methods.append(method)
    return methods


def quantizer_thresholds(spec: TensorSpec) -> np.ndarray:
    """The 255 float32 thresholds of an int8 quantiser: threshold j is the smallest float32 that
    ``spec.quantize`` maps to ``-127 + j`` or above (it is monotonic), found by bisection over the
    ordered float32 values. ``-128 + (number of thresholds <= x)`` then equals ``spec.quantize(x)``."""
    if spec.dtype != "int8" or spec.scale is None:
        raise ConfigError(f"the firmware generator needs an int8 model input, the bundle's is {spec.dtype}")
    levels = np.arange(-127, 128)
    lo = np.full(levels.shape, _ordered(np.float32(-np.inf)), dtype=np.int64)  # quantize(lo) < level
    hi = np.full(levels.shape, _ordered(np.float32(np.inf)), dtype=np.int64)  # quantize(hi) >= level
    while np.any(hi - lo > 1):
        mid = (lo + hi) // 2
        reached = spec.quantize(_from_ordered(mid)).astype(np.int64) >= levels
        hi = np.where(reached, mid, hi)
        lo = np.where(reached, lo, mid)
    return _from_ordered(hi)


def _ordered(x: np.float32) -> int:
    bits = int(np.array(x, dtype=np.float32).view(np.int32))
    return bits if bits >= 0 else -(bits & 0x7FFFFFFF)


def _from_ordered(o: np.ndarray) -> np.ndarray:
    o = np.asarray(o, dtype=np.int64)
    bits = np.where(o >= 0, o, (-o) | 0x80000000).astype(np.uint32)
    return bits.view(np.float32)


def _c_float(value: float) -> str:
    """A float32 as a C literal that reads back to the same float32."""
    value = np.float32(value)
    if not np.isfinite(value):
        raise ConfigError(f"cannot write the non-finite constant {value} into the firmware")
    text = f"{float(value):.9g}"
    if "e" not in text and "." not in text:
        text += ".0"
    return f"{text}f"


def _c_double(value: float) -> str:
    return repr(float(value))


def _c_table(values: np.ndarray, per_line: int = 6) -> str:
    items = [_c_float(v) for v in np.ravel(values)]
    return "\n".join("  " + ", ".join(items[i:i + per_line]) + "," for i in range(0, len(items), per_line))


def _row_constants(cfg: SpectrogramConfig, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row scale and offset: (20 log10(m) - mean) / std == log10(m) * (20 / std) - mean / std
    (firmware_sim.streaming_stft's form); linear features m * (1 / std) - mean / std."""
    gain = 20.0 if cfg.transform == "log" else 1.0
    mean = np.broadcast_to(np.asarray(cfg.norm_mean, dtype=np.float64), (rows,))
    std = np.broadcast_to(np.asarray(cfg.norm_std, dtype=np.float64), (rows,))
    return gain / std, mean / std


def _policy(policy: dict[str, Any] | None) -> tuple[Any, str]:
    from firmware_sim.decisions import DecisionPolicy

    if policy is None:
        return DecisionPolicy(), "the device default: the bundle declares none"
    try:
        return DecisionPolicy(**policy), "the bundle's"
    except TypeError as exc:
        raise ConfigError(f"the bundle's decision policy is not one this edgecnn reads ({exc})") from None


def _envelope_values(cfg: SpectrogramConfig) -> dict[str, Any] | None:
    """The envelope feature's constants (``edgecnn.dsp.frame_envelope`` / ``envelope_spectra``)."""
    if cfg.feature != "envelope":
        return None
    low, high = cfg.envelope_bins
    span = cfg.envelope_frames * cfg.envelope_per_frame
    return {"low": low, "high": high, "start": cfg.noverlap // 2, "decimation": cfg.envelope_decimation,
            "per_frame": cfg.envelope_per_frame, "frames": cfg.envelope_frames, "nfft": cfg.envelope_nfft,
            "window": _c_table(_envelope_window(span).astype(np.float32))}


def _template_text(name: str) -> str:
    return importlib.resources.files("export").joinpath("firmware_templates", name).read_text()


def firmware_sources(inputs: FirmwareInputs) -> dict[str, str]:
    """File name -> text of the generated firmware folder."""
    import jinja2

    cfg = inputs.cfg
    check_expressible(cfg, inputs.dsp_doc, inputs.device)
    methods = resolver_methods(_model_operators(inputs.model))
    rows, cols = cfg.input_shape[0], cfg.input_shape[1]
    scale, offset = _row_constants(cfg, rows)
    policy, policy_source = _policy(inputs.policy)
    for name in inputs.classes:
        if not name.isprintable() or '"' in name or "\\" in name:
            raise ConfigError(f"class name {name!r} cannot be written as a C string literal")
    values = {
        "digest": inputs.digest, "digest_macro": C_DIGEST_MACRO,
        "feature_version": int(inputs.dsp_doc.get("feature_version", 1)),
        "fs": _c_float(cfg.fs), "nperseg": cfg.nperseg, "hop": cfg.hop, "noverlap": cfg.noverlap,
        "n_frames": cfg.n_frames, "window_samples": cfg.window_samples,
        "detrend_constant": int(cfg.detrend == "constant"), "transform_log": int(cfg.transform == "log"),
        "log_floor_db": cfg.log_floor_db, "log_floor": _c_float(10.0 ** (cfg.log_floor_db / 20.0)),
        "rows": rows, "cols": cols,
        "input_scale": _c_double(inputs.input_spec.scale), "input_zero_point": inputs.input_spec.zero_point,
        "output_scale": _c_float(inputs.output_spec.scale), "output_zero_point": inputs.output_spec.zero_point,
        "classes": inputs.classes, "policy": policy, "policy_source": policy_source,
        "arena_bytes": int(inputs.arena_bytes),
        "feature_envelope": int(cfg.feature == "envelope"), "level_column_mean": int(cfg.level == "column_mean"),
        "envelope": _envelope_values(cfg),
        "window": _c_table(_scaled_window(cfg).astype(np.float32)),
        "row_scale": _c_table(scale.astype(np.float32)), "row_offset": _c_table(offset.astype(np.float32)),
        "thresholds": _c_table(quantizer_thresholds(inputs.input_spec)),
        "resolver_methods": methods, "model_symbol": MODEL_DATA_STEM,
    }
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    out = {name: env.from_string(_template_text(template)).render(**values) for name, template in TEMPLATES.items()}
    out.update({name: _template_text(name) for name in STATIC_FILES})
    out[f"{MODEL_DATA_STEM}.h"] = carray.c_header(MODEL_DATA_STEM)
    out[f"{MODEL_DATA_STEM}.cc"] = carray.c_source(inputs.model, MODEL_DATA_STEM, header=f"{MODEL_DATA_STEM}.h",
                                                   comment=f"The bundle's int8 model ({len(inputs.model)} bytes).")
    return out


def _model_operators(model: bytes) -> tuple[int | str, ...]:
    from export.tflite_reader import read_tflite

    try:
        return read_tflite(model).operators
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"the int8 model is not a readable TFLite file ({exc})") from None


def inputs_from_bundle(bundle) -> FirmwareInputs:
    """The generator's inputs from a loaded (verified) ``export.bundle.Bundle``."""
    entry = bundle.model("tflite", "int8")
    arena = entry.arena_bytes or bundle.footprint.get("arena_bytes_tflm")
    if not arena:
        raise ConfigError(f"{bundle.path}: the manifest gives no TFLM arena size for {entry.file}")
    return FirmwareInputs(cfg=bundle.cfg, dsp_doc=dict(bundle.manifest["dsp"]), classes=list(bundle.classes),
                          digest=bundle.digest, input_spec=entry.input, output_spec=entry.output,
                          arena_bytes=int(arena), model=bundle.model_path(entry).read_bytes(),
                          policy=bundle.manifest.get(POLICY_KEY), device=bundle.device)


def write_sources(sources: dict[str, str], out_dir: str | Path) -> list[Path]:
    """Write ``firmware_sources`` output into ``out_dir`` (created if needed; same names replaced)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sorted(sources.items()):
        (out_dir / name).write_text(text)
        written.append(out_dir / name)
    return written
