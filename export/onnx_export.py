"""Keras model -> float ONNX (tf2onnx) and int8 ONNX (onnxruntime static QDQ quantisation).

``tf2onnx.convert.from_keras`` fails on Keras 3 models, so the float model goes through
``from_function`` on a ``tf.function`` with an explicit input signature (dynamic batch). The int8
model is ``quantize_static`` in QDQ format, 8-bit unsigned activations and per-channel 8-bit unsigned
weights (U8U8), calibrated (min/max) on the same feature images as the int8 TFLite model; its input
and output stay float32.

Why U8U8 and not signed int8 (S8S8, onnxruntime's default): on x86 CPUs without AVX-VNNI, ONNX
Runtime computes S8S8 and U8S8 convolutions with VPMADDUBSW, which adds pairs of 8-bit products in a
saturating int16. The edge model's first convolution (one input channel, batch norm folded into
large weights) overflows it: measured on the CI machine's CPU (AVX2, no VNNI), its fused output was
222 quantisation steps away from the QDQ graph's own definition, and accuracy fell from 0.9167 to
0.8250 on 120 test windows while int8 TFLite agreed on every window. U8U8 has no saturating step
on any CPU (fused output within one step of the definition, every layer), and unlike
``reduce_range`` (7-bit weights) keeps the full 8 bits: max probability error 0.050 against
float, TFLite int8's is 0.048.

Training side: imports TensorFlow, tf2onnx and onnxruntime inside the functions only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from export.bundle import TensorSpec

OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "probabilities"


def convert_float(model: Any, metadata: dict[str, str]) -> Any:
    """The Keras model as an onnx.ModelProto (opset 17, batch dynamic), checked, with metadata_props."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    shape = tuple(model.inputs[0].shape[1:])
    signature = (tf.TensorSpec((None, *shape), tf.float32, name=INPUT_NAME),)

    @tf.function(input_signature=signature)
    def forward(x):
        return {OUTPUT_NAME: model(x, training=False)}

    proto, _ = tf2onnx.convert.from_function(forward, input_signature=signature, opset=OPSET)
    canonical_names(proto)
    # tf2onnx records the traced function's name, which also counts up within a process
    proto.graph.doc_string = f"edgecnn export of Keras model {model.name!r} (tf2onnx from_function)"
    set_metadata(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    return proto


_SUFFIX = re.compile(r"__(\d+)")


def canonical_names(proto: Any) -> None:
    """Renumber the ``__N`` suffixes tf2onnx gives the names it invents, in order of appearance.

    tf2onnx draws N from a process-wide counter, so a second export in the same process would
    otherwise give different bytes for the same model. The renumbering is one-to-one on N, so
    distinct names stay distinct.
    """
    numbers: dict[str, int] = {}

    def fix(name: str) -> str:
        return _SUFFIX.sub(lambda m: f"__{numbers.setdefault(m.group(1), len(numbers) + 1)}", name)

    graph = proto.graph
    for node in graph.node:
        node.name = fix(node.name)
        node.input[:] = [fix(n) for n in node.input]
        node.output[:] = [fix(n) for n in node.output]
    for items in (graph.initializer, graph.value_info, graph.input, graph.output):
        for item in items:
            item.name = fix(item.name)
    for items in (graph.value_info, graph.input, graph.output):
        for item in items:
            for dim in item.type.tensor_type.shape.dim:
                if dim.HasField("dim_param"):
                    dim.dim_param = fix(dim.dim_param)


def set_metadata(proto: Any, metadata: dict[str, str]) -> None:
    """Set (replace) string ``metadata_props`` entries of an ONNX model in place, keeping others."""
    keep = [p for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


class _ImageReader:
    """onnxruntime CalibrationDataReader over feature images: ``get_next()`` until None."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self._input_name = input_name
        self._images = np.asarray(images, dtype=np.float32)
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._next >= len(self._images):
            return None
        image = self._images[self._next:self._next + 1]
        self._next += 1
        return {self._input_name: image}

    def rewind(self) -> None:
        self._next = 0


def quantize_int8(float_path: Path, out_path: Path, images: np.ndarray, metadata: dict[str, str]) -> None:
    """Static 8-bit QDQ quantisation (U8U8, per-channel weights) of a float ONNX file, calibrated on
    ``images``. See the module docstring for why the activations and weights are unsigned."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    reader = type("EdgecnnCalibrationReader", (_ImageReader, CalibrationDataReader), {})(
        INPUT_NAME, images)
    quantize_static(str(float_path), str(out_path), reader, quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                    calibrate_method=CalibrationMethod.MinMax)
    proto = onnx.load(str(out_path))
    set_metadata(proto, metadata)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(out_path))


def tensor_specs(path: Path) -> tuple[TensorSpec, TensorSpec]:
    """Input and output TensorSpec of an ONNX file (float tensors; -1 marks a dynamic dimension)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def spec(value: Any) -> TensorSpec:
        tensor_type = value.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)).name
        return TensorSpec(name=value.name, shape=dims, dtype=dtype, scale=None, zero_point=None)

    return spec(graph.input[0]), spec(graph.output[0])


def run_onnxruntime(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Run an ONNX file on a batch of input images with ONNX Runtime (CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return session.run(None, {name: np.asarray(inputs, dtype=np.float32)})[0]
