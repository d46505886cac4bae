"""Keras model -> TFLite flatbuffers (int8, float32, float16, dynamic range), metadata, tensor specs.

The model is re-wrapped with a fixed batch of 1 before conversion, so every tensor shape is
static and the whole graph runs on the interpreters' fast paths. Full-integer int8 uses int8
input and output and a representative dataset of real feature images.

Training side: imports TensorFlow inside the functions that need it (never at module level).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np

from edgecnn.errors import InputError
from export.bundle import MODEL_METADATA_KEY, TensorSpec

TFLITE_DTYPES = ("int8", "float32", "float16", "dynamic")
#: Name of the metadata buffer that carries the bundle settings (DSP config, classes) as JSON.
METADATA_NAME = MODEL_METADATA_KEY


def fixed_batch_model(model: Any) -> Any:
    """The same Keras model (shared weights) with its input batch fixed to 1."""
    import keras

    shape = tuple(model.inputs[0].shape[1:])
    inp = keras.Input(shape=shape, batch_size=1, name="input")
    return keras.Model(inp, model(inp), name=f"{model.name}_batch1")


def int8_converter(model: Any, representative: Iterable[np.ndarray], *, int8_io: bool = True) -> Any:
    """A TFLiteConverter set up for full-integer int8, calibrated on ``representative`` images.

    ``int8_io=False`` keeps float input and output (int8 inside), as the quantization debugger needs.
    """
    import tensorflow as tf

    images = list(representative)
    converter = tf.lite.TFLiteConverter.from_keras_model(fixed_batch_model(model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.asarray(x, np.float32)] for x in images)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if int8_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter


def convert(model: Any, dtype: str, representative: Iterable[np.ndarray] | None = None) -> bytes:
    """Convert a Keras model to a TFLite flatbuffer of the given dtype.

    ``representative`` (required for ``int8``) yields float32 input images of shape
    (1, *input_shape); they set the activation ranges.
    """
    import tensorflow as tf

    if dtype not in TFLITE_DTYPES:
        raise ValueError(f"unknown TFLite dtype {dtype!r}; choose from {TFLITE_DTYPES}")
    if dtype == "int8":
        if representative is None:
            raise ValueError("int8 conversion needs representative input images")
        converter = int8_converter(model, representative)
    else:
        converter = tf.lite.TFLiteConverter.from_keras_model(fixed_batch_model(model))
    if dtype == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif dtype == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    from tensorflow.lite.python.convert_phase import ConverterError

    with warnings.catch_warnings():
        # int8 input statistics come from the representative dataset; TF warns regardless
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        try:
            return bytes(converter.convert())
        except (ConverterError, RuntimeError, ValueError) as exc:
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise InputError(f"the model cannot be converted to {dtype} TFLite: {first[:300]} "
                             "(use layers with TFLite int8 kernels, or leave this format out)") from exc


def add_metadata(flatbuffer: bytes, name: str, data: bytes) -> bytes:
    """A copy of a TFLite flatbuffer with one more named metadata buffer (replacing a same-named one)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(flatbuffer, 0))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(data, dtype=np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = name
    entry.buffer = len(model.buffers) - 1
    kept = [m for m in (model.metadata or []) if _text(m.name) != name]
    model.metadata = kept + [entry]
    builder = flatbuffers.Builder(len(flatbuffer) + len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata(flatbuffer: bytes) -> dict[str, bytes]:
    """All named metadata buffers of a TFLite flatbuffer."""
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    out = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        out[_text(entry.Name())] = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return out


def _text(value: bytes | str | None) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def tensor_specs(model_path: str) -> tuple[TensorSpec, TensorSpec]:
    """Input and output TensorSpec of a .tflite file, as LiteRT reads them."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model_path))
    return (_spec(interpreter.get_input_details()[0]), _spec(interpreter.get_output_details()[0]))


def _spec(detail: dict) -> TensorSpec:
    dtype = np.dtype(detail["dtype"]).name
    scale, zero_point = detail["quantization"]
    quantized = dtype in ("int8", "uint8", "int16") and scale != 0.0
    return TensorSpec(name=str(detail["name"]), shape=tuple(int(d) for d in detail["shape"]), dtype=dtype,
                      scale=float(scale) if quantized else None,
                      zero_point=int(zero_point) if quantized else None)
