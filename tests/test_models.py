"""Models: the seed CNN is the reference's, the footprint counts match Keras, the edge model fits an M4."""

import math

import numpy as np
import pytest

from edgecnn.errors import ConfigError
from edgecnn.models import EDGE_BUDGET, build_model, count_params_macs
from edgecnn.train import default_config

SPECTROGRAM = (129, 44, 1)


def keras_macs(model) -> int:
    """MACs from the shapes Keras itself reports (output tensor and kernel weights), layer by layer."""
    import keras

    total = 0
    for layer in model.layers:  # Keras's own symbolic shape inference, layer by layer
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        inputs = layer.input
        specs = ([keras.KerasTensor(t.shape) for t in inputs] if isinstance(inputs, (list, tuple))
                 else keras.KerasTensor(inputs.shape))
        x = layer.compute_output_spec(specs)
        out = [int(v) for v in x.shape[1:]]
        if kind == "Conv2D":
            kh, kw, cin, _ = layer.kernel.shape
            total += math.prod(out) * kh * kw * cin
        elif kind == "DepthwiseConv2D":
            kh, kw, _, _ = layer.kernel.shape
            total += math.prod(out) * kh * kw
        elif kind == "SeparableConv2D":
            kh, kw, cin, mult = layer.depthwise_kernel.shape
            total += math.prod(out[:2]) * (cin * mult * kh * kw) + math.prod(out) * cin * mult
        elif kind == "Dense":
            total += math.prod(out) * layer.kernel.shape[0]
    return total


def test_seed_is_the_reference_cnn_layer_for_layer():
    model = build_model("seed", SPECTROGRAM, 2)
    summary = [(type(layer).__name__, layer.get_config()) for layer in model.layers]
    kinds = [k for k, _ in summary]
    assert kinds == ["Conv2D", "Conv2D", "MaxPooling2D", "Flatten", "Dense", "Dense"]
    for _, cfg in summary[:2]:
        assert (cfg["filters"], tuple(cfg["kernel_size"]), cfg["activation"], cfg["padding"]) == \
            (16, (3, 3), "relu", "same")
    assert tuple(summary[2][1]["pool_size"]) == (2, 2)
    assert (summary[4][1]["units"], summary[4][1]["activation"]) == (128, "relu")
    assert (summary[5][1]["units"], summary[5][1]["activation"]) == (2, "softmax")
    # 64 * 22 * 16 flattened features into 128 units dominate: about 2.9 M parameters.
    assert model.count_params() == 2_886_450


@pytest.mark.parametrize("arch,shape,n_classes", [("seed", SPECTROGRAM, 2), ("edge", SPECTROGRAM, 2),
                                                  ("edge", SPECTROGRAM, 4), ("seed", (28, 28, 1), 10),
                                                  ("edge", (65, 30, 1), 3)])
def test_params_and_macs_match_keras(arch, shape, n_classes):
    model = build_model(arch, shape, n_classes)
    counted = count_params_macs(model)
    assert counted["params"] == model.count_params()
    assert counted["macs"] == keras_macs(model)
    assert model.outputs[0].shape[-1] == n_classes


def test_seed_macs_by_hand():
    # conv1 129*44*16*9, conv2 129*44*16*144, dense 22528*128 + 128*2
    expected = 129 * 44 * 16 * 9 + 129 * 44 * 16 * 144 + 64 * 22 * 16 * 128 + 128 * 2
    assert count_params_macs(build_model("seed", SPECTROGRAM, 2))["macs"] == expected


def test_edge_is_a_hundred_times_smaller_and_within_the_mac_budget():
    seed = count_params_macs(build_model("seed", SPECTROGRAM, 2))
    edge = count_params_macs(build_model("edge", SPECTROGRAM, 2))
    assert edge["params"] * 100 <= seed["params"]
    assert edge["macs"] <= EDGE_BUDGET["macs"]


@pytest.mark.parametrize("arch,shape,n_classes,message", [
    ("tiny", SPECTROGRAM, 2, "unknown architecture 'tiny'"),
    ("edge", (129, 44), 2, r"must be \(height, width, channels\)"),
    ("edge", SPECTROGRAM, 1, "n_classes=1 must be an integer >= 2"),
])
def test_build_model_refuses_bad_arguments(arch, shape, n_classes, message):
    with pytest.raises(ConfigError, match=message):
        build_model(arch, shape, n_classes)


@pytest.mark.parametrize("shape", [default_config("edge").input_shape, SPECTROGRAM])
def test_edge_int8_fits_a_cortex_m4(tmp_path, shape):
    """Full-integer TFLite of the edge model (its default envelope image, and a spectrogram):
    flash and tflite-micro arena within 32 KB each."""
    import tensorflow as tf

    from tests.footprint_util import tflm_arena_bytes

    model = build_model("edge", shape, 4)
    rng = np.random.default_rng(0)
    calib = rng.normal(size=(16, *shape)).astype(np.float32)
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in calib)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    flat = converter.convert()
    assert len(flat) <= EDGE_BUDGET["int8_bytes"]
    path = tmp_path / "edge_int8.tflite"
    path.write_bytes(flat)
    arena = tflm_arena_bytes(path)
    assert math.prod(shape) < arena <= EDGE_BUDGET["arena_bytes"]
