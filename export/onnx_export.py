"""Keras model -> float ONNX (tf2onnx) and int8 ONNX (onnxruntime static QDQ quantisation).

``tf2onnx.convert.from_keras`` fails on Keras 3 models, so the float model goes through
``from_function`` on a ``tf.function`` with an explicit input signature (dynamic batch). The int8
model is ``quantize_static`` in QDQ format, signed int8 activations and per-channel symmetric int8
weights as TFLite's scheme, calibrated (min/max) on the same feature images as the int8 TFLite model,
with ``reduce_range`` (weights in 7 bits, [-64, 63]); its input and output stay float32.

Why ``reduce_range``: on x86 CPUs without AVX-VNNI, ONNX Runtime computes int8 convolutions with
VPMADDUBSW, which adds pairs of 8-bit products in a saturating int16. The edge model's first
convolution (one input channel, batch norm folded into large weights) overflowed it with full 8-bit
weights: measured on the CI machine's CPU (AVX2, no VNNI), its fused output was 222 quantisation
steps away from the QDQ graph's own definition, and accuracy fell from 0.9167 to 0.8250 on 120 test
windows while int8 TFLite agreed on every window. With 7-bit weights the pair sums fit (fused output
within one step of the definition), at a small cost in precision (max probability error 0.078
against float there; TFLite int8's 0.048). Unsigned weights (U8U8) also avoid the saturation but
depart from TFLite's symmetric scheme: on the stream-detection test model they raised a false
alarm that every TFLite runtime and S8S8 with ``reduce_range`` did not.

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
    """Static int8 QDQ quantisation (per-channel 7-bit weights: ``reduce_range``) of a float ONNX file,
    calibrated on ``images``. See the module docstring for why the weights use 7 bits."""
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
                    per_channel=True, reduce_range=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
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
