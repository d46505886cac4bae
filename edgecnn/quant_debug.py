"""Where a quantised model diverges from float: per-layer error of the int8 TFLite model.

Runs TensorFlow's quantization debugger (``tf.lite.experimental.QuantizationDebugger``) on the run's
Keras model, converted exactly as export does (full-integer int8, calibrated on the same training
windows) but with float input/output so the debugger can feed it. For every quantised tensor it
reports ``rmse/scale``: the RMS error between float and dequantised int8 in units of the tensor's
quantisation step. Pure rounding noise gives about 1/sqrt(12) = 0.29; layers far above that are where
accuracy is lost. Training side only (imports TensorFlow).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import numpy as np


def layer_errors(model_path, calibration_images: np.ndarray, debug_images: np.ndarray) -> list[dict[str, Any]]:
    """Per-tensor statistics in graph order: op, tensor, rmse/scale, max abs error, scale."""
    from edgecnn.quiet import import_tensorflow
    from edgecnn.rundir import load_keras_model
    from export.tflite_export import int8_converter

    tf = import_tensorflow()
    model = load_keras_model(model_path)
    converter = int8_converter(model, (img[None] for img in calibration_images), int8_io=False)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=lambda: ([np.asarray(img[None], np.float32)] for img in debug_images))
    debugger.run()
    buffer = io.StringIO()
    debugger.layer_statistics_dump(buffer)
    rows = []
    for row in csv.DictReader(io.StringIO(buffer.getvalue())):
        scale = float(row["scale"])
        mse = float(row["mean_squared_error"])
        rows.append({"op": row["op_name"], "tensor": row["tensor_name"], "tensor_index": int(row["tensor_idx"]),
                     "elements": int(float(row["num_elements"])), "scale": scale,
                     "zero_point": int(float(row["zero_point"])),
                     "rmse_over_scale": math.sqrt(mse) / scale if scale > 0 else float("nan"),
                     "max_abs_error": float(row["max_abs_error"]), "mean_error": float(row["mean_error"])})
    return rows
