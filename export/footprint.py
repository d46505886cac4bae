"""Footprint: parameters and MACs of a Keras model, the tflite-micro tensor arena, device buffers.

``count_params_macs`` walks a built Keras model's layers and counts by layer type, without
importing TensorFlow or keras itself (it only reads layer attributes), so the training side can
call it too. ``tflm_arena`` runs the int8 model's allocation in tflite-micro and parses what it
prints. ``device_buffers`` sizes the device's other working memory from the DSP config.

TF-free: numpy, the standard library, and tflite_micro imported inside ``tflm_arena``.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import math
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgecnn.config import SpectrogramConfig
from edgecnn.errors import BundleError, ConfigError

#: Bytes of one float32 sample or feature.
F32 = 4
#: Samples per DMA block the device's ring buffer is sized for (DESIGN.md: e.g. 256-sample half-buffers).
DEFAULT_BLOCK_SAMPLES = 256
ARENA_NOTE = ("tensor arena measured by tflite-micro on this 64-bit host; a 32-bit target needs "
              "somewhat less (smaller pointers in TfLiteEvalTensor, node and persistent structs), "
              "so this figure is a safe upper bound for sizing the arena")

_CONV = ("Conv1D", "Conv2D")
_POOL = ("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D")
_GLOBAL_POOL = ("GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D",
                "GlobalMaxPooling2D")
#: Layers with neither weights nor multiply-accumulates worth counting.
_FREE = ("InputLayer", "Flatten", "Reshape", "Dropout", "SpatialDropout2D", "Activation", "ReLU",
         "Softmax", "LeakyReLU", "Permute", "Identity", "ZeroPadding2D", "Cropping2D", "Add",
         "Concatenate", "Multiply", "GaussianNoise", "RandomFlip", "RandomTranslation")


@dataclasses.dataclass(frozen=True)
class LayerCost:
    """One layer's parameter count and multiply-accumulates per inference (batch 1)."""

    name: str
    kind: str
    params: int
    macs: int


def count_params_macs(model: Any) -> tuple[int, int]:
    """Total (parameters, MACs per inference) of a built Keras model; see ``layer_costs``."""
    costs = layer_costs(model)
    return sum(c.params for c in costs), sum(c.macs for c in costs)


def layer_costs(model: Any) -> list[LayerCost]:
    """Per-layer costs of a built Keras model, nested models flattened.

    MACs: convolutions and dense layers count one multiply-accumulate per weight use; pooling
    layers count one operation per input element they read (a window element or, for global
    pooling, every element); batch normalisation counts 0 because converters fold it into the
    preceding convolution. Parameters include non-trainable ones, as ``model.count_params()``.
    """
    out: list[LayerCost] = []
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.__class__.__name__ in ("Sequential", "Functional", "Model"):
            out.extend(layer_costs(layer))
        else:
            out.append(_layer_cost(layer))
    return out


def _layer_cost(layer: Any) -> LayerCost:
    kind = layer.__class__.__name__
    params = int(sum(math.prod(w.shape) for w in layer.weights))
    macs = 0
    if kind in _CONV or kind in ("DepthwiseConv2D", "SeparableConv2D", "DepthwiseConv1D", "SeparableConv1D"):
        out_shape = _shape(layer, "output")
        in_ch = _shape(layer, "input")[-1]
        positions = math.prod(out_shape[1:-1])
        kernel = math.prod(layer.kernel_size)
        if kind in _CONV:
            macs = positions * kernel * (in_ch // getattr(layer, "groups", 1)) * layer.filters
        elif kind.startswith("Depthwise"):
            macs = positions * kernel * in_ch * layer.depth_multiplier
        else:  # separable: depthwise then 1x1 pointwise
            macs = positions * (kernel * in_ch * layer.depth_multiplier
                                + in_ch * layer.depth_multiplier * layer.filters)
    elif kind == "Dense":
        in_shape = _shape(layer, "input")
        macs = math.prod(in_shape[1:]) * layer.units
    elif kind in _POOL:
        macs = math.prod(_shape(layer, "output")[1:]) * math.prod(layer.pool_size)
    elif kind in _GLOBAL_POOL:
        macs = math.prod(_shape(layer, "input")[1:])
    return LayerCost(name=layer.name, kind=kind, params=params, macs=int(macs))


def _shape(layer: Any, which: str) -> tuple[int, ...]:
    tensor = getattr(layer, which)
    shape = tuple(tensor.shape)
    if any(d is None for d in shape[1:]):
        raise ValueError(f"layer {layer.name}: {which} shape {shape} is not fully known; "
                         "build the model with a fixed input shape first")
    return shape


@contextlib.contextmanager
def captured_native_output() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptors 1 and 2 (not just ``sys.stdout``).

    Yields a list that holds the captured text once the block ends.
    """
    result: list[str] = []
    libc = ctypes.CDLL(None)
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile() as sink:
        saved = [os.dup(1), os.dup(2)]
        try:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield result
        finally:
            libc.fflush(None)  # C stdio buffers must reach the file before fd 1 goes back
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            result.append(sink.read().decode("utf-8", "replace"))


_ARENA_RE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")


def tflm_arena(model_path: str | Path) -> dict[str, int]:
    """Tensor-arena bytes tflite-micro allocates for a model: ``{"total", "head", "tail"}``.

    ``head`` holds the activations (the two largest live at once), ``tail`` the persistent
    structures. Raises BundleError when tflite-micro cannot load or allocate the model.
    """
    from tflite_micro import runtime

    with captured_native_output() as text:
        try:
            interpreter = runtime.Interpreter.from_file(str(model_path), arena_size=None)
        except (RuntimeError, ValueError) as exc:
            interpreter, error = None, exc
        else:
            interpreter.print_allocations()
    if interpreter is None:
        reason = " ".join(line.strip() for line in text[0].splitlines() if line.strip())[:300]
        raise BundleError(f"{model_path}: tflite-micro cannot load the model ({reason or error})")
    found = {key: int(value) for key, value in _ARENA_RE.findall(text[0])}
    if "total" not in found:
        raise BundleError(f"{model_path}: tflite-micro printed no arena total: {text[0][:200]!r}")
    return found


def device_buffers(cfg: SpectrogramConfig, *, block_samples: int = DEFAULT_BLOCK_SAMPLES,
                   dsp: str | None = None) -> dict[str, Any]:
    """Bytes of the device's working memory outside the tensor arena, from the DSP config.

    - ring buffer: one frame of history plus one incoming block, so a frame can always be
      assembled while the next block lands: ``nperseg + block_samples`` samples (float32; int16
      ADC counts when ``dsp`` is ``cmsis-q15``);
    - STFT scratch: without ``dsp`` (a float32 port), the windowed frame, the packed real-FFT
      output (``nperseg`` floats, as ``arm_rfft_fast_f32``), the magnitude column, the window
      coefficients and the normalisation constants; with ``dsp`` (``cmsis-f32``/``cmsis-q15``),
      that backend's per-frame buffers (``firmware_sim.dsp_backends.working_memory_bytes``) plus
      the normalisation constants, and its constant tables (window, FFT) under
      ``dsp_tables_flash_bytes``;
    - rolling image: ``n_freq x n_frames`` float features, quantised into the arena's int8
      input tensor at each decision.

    ``dsp_working_memory`` always lists every backend's buffers and tables (bytes), so a bundle
    shows what each choice costs.
    """
    from firmware_sim.dsp_backends import BACKENDS, working_memory_bytes  # TF-free; no import cycle

    norm = (len(cfg.norm_mean) + len(cfg.norm_std)) * F32
    per_backend = {}
    for name in BACKENDS:
        try:
            per_backend[name] = working_memory_bytes(name, cfg)
        except ConfigError:
            continue  # e.g. a frame length CMSIS-DSP has no tables for
    sample_bytes = 2 if dsp == "cmsis-q15" else F32
    ring = (cfg.nperseg + block_samples) * sample_bytes
    if dsp is None or dsp == "numpy":
        stft = (cfg.nperseg + cfg.nperseg + cfg.n_freq + cfg.nperseg) * F32 + norm
        tables = None
    else:
        memory = working_memory_bytes(dsp, cfg)
        stft = memory["ram_total"] + norm
        tables = memory["flash_total"]
    image = cfg.n_freq * cfg.n_frames * F32
    out: dict[str, Any] = {
        "block_samples": block_samples,
        "dsp_backend": dsp,
        "ring_buffer_bytes": ring,
        "stft_scratch_bytes": stft,
        "rolling_image_bytes": image,
        "total_bytes": ring + stft + image,
        "dsp_working_memory": per_backend,
    }
    if tables is not None:
        out["dsp_tables_flash_bytes"] = tables
    return out
