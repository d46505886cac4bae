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

#: Samples per DMA block the device's ring buffer is sized for (DESIGN.md: e.g. 256-sample half-buffers).
DEFAULT_BLOCK_SAMPLES = 256
ARENA_NOTE = ("tensor arena measured by tflite-micro on this 64-bit host; a 32-bit target needs "
              "somewhat less (smaller pointers in TfLiteEvalTensor, node and persistent structs), "
              "so this figure is a safe upper bound for sizing the arena")

_CONV = ("Conv1D", "Conv2D")


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
    (comparisons and additions, no multiplies) and activations count 0; batch normalisation counts 0
    because converters fold it into the preceding convolution. Parameters include non-trainable ones,
    as ``model.count_params()``.
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
                   dsp: str | None = None, input_itemsize: int = 1, n_classes: int = 2) -> dict[str, Any]:
    """Bytes of the device's working memory outside the tensor arena, from the DSP config.

    The same layout the device side checks a part against (``firmware_sim.profiles.
    runtime_buffer_bytes``: one definition), grouped for people:

    - ring buffer: two DMA half-buffers of int16 plus the sample history of one frame and a block
      (float32; int16 ADC counts when ``dsp`` is ``cmsis-q15``);
    - STFT scratch: the float32 port's complex frame, or the CMSIS backend's per-frame buffers
      (``firmware_sim.dsp_backends.working_memory_bytes``); its constant tables (window, FFT) go to
      flash, under ``dsp_tables_flash_bytes``, as do the normalisation constants;
    - rolling image: ``n_freq x n_frames`` in the model input's type (columns quantised on arrival);
    - smoothing: the last K probability vectors.

    ``dsp_working_memory`` lists every backend's buffers and tables (bytes), so a bundle shows what
    each choice costs.
    """
    from firmware_sim.dsp_backends import BACKENDS, working_memory_bytes  # TF-free; no import cycle
    from firmware_sim.profiles import dsp_flash_bytes, runtime_buffer_bytes

    per_backend = {}
    for name in BACKENDS:
        try:
            per_backend[name] = working_memory_bytes(name, cfg)
        except ConfigError:
            continue  # e.g. a frame length CMSIS-DSP has no tables for
    parts = runtime_buffer_bytes(cfg, block=block_samples, input_itemsize=input_itemsize, n_classes=n_classes,
                                 dsp=None if dsp == "numpy" else dsp)
    scratch = sum(v for k, v in parts.items() if k == "fft_scratch" or k.startswith("dsp_"))
    out: dict[str, Any] = {
        "block_samples": block_samples,
        "dsp_backend": dsp,
        "ring_buffer_bytes": parts["dma_buffers"] + parts["sample_history"],
        "stft_scratch_bytes": scratch,
        "rolling_image_bytes": parts["rolling_image"],
        **({"envelope_history_bytes": parts["envelope_history"]} if "envelope_history" in parts else {}),
        "smoothing_bytes": parts["smoothing"],
        "total_bytes": sum(parts.values()),
        "dsp_working_memory": per_backend,
    }
    tables = dsp_flash_bytes(cfg, None if dsp == "numpy" else dsp)
    if tables:
        out["dsp_tables_flash_bytes"] = sum(tables.values())
    return out
