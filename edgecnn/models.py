"""The model zoo: the reference ``seed`` CNN, the microcontroller ``edge`` CNN, and their footprint.

``build_model(arch, input_shape, n_classes)`` is the one entry point; the models take any image
shape (spectrograms (129, 44, 1), MNIST digits (28, 28, 1), ...), so nothing here knows about
vibration. ``count_params_macs(model)`` derives parameters and multiply-accumulates from each
layer's configuration and the shapes it propagates itself (tests check both against Keras).

Training side only: imports Keras; the device side never imports this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from edgecnn.errors import ConfigError

#: Footprint budget of the ``edge`` model on a Cortex-M4-class part (see docs/training.md).
EDGE_BUDGET = {"int8_bytes": 32 * 1024, "macs": 2_000_000, "arena_bytes": 32 * 1024}


def _keras():
    import keras

    return keras


def seed_model(input_shape: Sequence[int], n_classes: int):
    """The reference notebook's CNN, layer for layer (about 2.9 M parameters at 129 x 44)."""
    keras = _keras()
    layers = keras.layers
    return keras.Sequential([
        keras.Input(tuple(input_shape)),
        layers.Conv2D(16, (3, 3), activation="relu", padding="same"),
        layers.Conv2D(16, (3, 3), activation="relu", padding="same"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(n_classes, activation="softmax"),
    ], name="seed")


def edge_model(input_shape: Sequence[int], n_classes: int):
    """A compact CNN for a Cortex-M4: int8 <= 32 KB, <= 2 M MACs, tensor arena <= 32 KB.

    A bearing fault shows as energy rising in some frequency band (a structural resonance rung by
    impacts, or defect-frequency lines), so the model is frequency-aware and time-invariant
    (docs/training.md has the measurements behind each choice):
    - one 5 x 4 convolution with stride 4 in time only, 8 channels: local spectral shape and how it
      changes within 4 frames, at full frequency resolution (129 x 11 x 8, 11 KB of int8);
    - max over the remaining time: a burst in any frame counts (a plain time average, or averaging
      frames before the convolution, lost impulsive evidence and failed whole healthy recordings);
    - three 1-D convolutions along frequency (two strided) widen to 32 channels;
    - max over frequency: "is there such a band anywhere", so a resonance that moves between
      machines is found wherever it is; then one dense layer.
    The first tries (strided 3 x 3 convolutions with global average pooling) trailed the seed model
    badly: averaging over frequency throws away where the energy is. Batch normalisation is folded
    into the convolutions at export (free on the device) and synchronised across replicas so
    multi-worker training keeps identical statistics on every worker.
    """
    keras = _keras()
    layers = keras.layers

    def norm_relu(x):
        x = layers.BatchNormalization(momentum=0.9, synchronized=True)(x)
        return layers.ReLU()(x)

    inputs = keras.Input(tuple(input_shape))
    stride = 4 if int(input_shape[1]) >= 8 else 1
    x = norm_relu(layers.Conv2D(8, (5, stride), strides=(1, stride), padding="same", use_bias=False)(inputs))
    x = layers.MaxPooling2D((1, x.shape[2]))(x)
    for filters, kernel, step in ((16, 7, 1), (32, 5, 2), (32, 5, 2)):
        x = norm_relu(layers.Conv2D(filters, (kernel, 1), strides=(step, 1), padding="same",
                                    use_bias=False)(x))
    x = layers.MaxPooling2D((x.shape[1], 1))(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(n_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="edge")


#: Architecture name -> builder(input_shape, n_classes).
ARCHITECTURES: dict[str, Callable] = {"seed": seed_model, "edge": edge_model}


def build_model(arch: str, input_shape: Sequence[int], n_classes: int):
    """A fresh, uncompiled Keras model of architecture ``arch`` ('seed' or 'edge')."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ConfigError(f"input_shape {input_shape!r} must be (height, width, channels), all >= 1")
    if not isinstance(n_classes, int) or n_classes < 2:
        raise ConfigError(f"n_classes={n_classes!r} must be an integer >= 2")
    return ARCHITECTURES[arch](shape, n_classes)


# Footprint ------------------------------------------------------------------------------------
def _conv_out(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return math.ceil(size / stride)
    return (size - kernel) // stride + 1


def _pair(value) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def layer_footprint(layer, in_shape: tuple[int, ...]) -> tuple[tuple[int, ...], int, int]:
    """(output shape without batch, parameters, MACs) of one layer from its config and input shape.

    MACs count the multiply-accumulates of convolutions and dense layers (the work an int8 kernel
    does); activations, pooling and batch normalisation (folded into the convolution at export)
    count zero.
    """
    kind = type(layer).__name__
    cfg = layer.get_config()
    if kind in ("Conv2D", "DepthwiseConv2D", "SeparableConv2D"):
        h, w, c = in_shape
        kh, kw = _pair(cfg["kernel_size"])
        sh, sw = _pair(cfg["strides"])
        oh, ow = _conv_out(h, kh, sh, cfg["padding"]), _conv_out(w, kw, sw, cfg["padding"])
        bias = bool(cfg.get("use_bias", True))
        if kind == "Conv2D":
            groups = int(cfg.get("groups", 1))
            f = int(cfg["filters"])
            params = kh * kw * (c // groups) * f + (f if bias else 0)
            return (oh, ow, f), params, oh * ow * f * kh * kw * (c // groups)
        mult = int(cfg["depth_multiplier"])
        if kind == "DepthwiseConv2D":
            out_c = c * mult
            params = kh * kw * out_c + (out_c if bias else 0)
            return (oh, ow, out_c), params, oh * ow * out_c * kh * kw
        f = int(cfg["filters"])
        params = kh * kw * c * mult + c * mult * f + (f if bias else 0)
        return (oh, ow, f), params, oh * ow * c * mult * (kh * kw + f)
    if kind == "Dense":
        units = int(cfg["units"])
        n_in = in_shape[-1]
        params = n_in * units + (units if cfg.get("use_bias", True) else 0)
        return tuple(in_shape[:-1]) + (units,), params, math.prod(in_shape[:-1]) * n_in * units
    if kind == "BatchNormalization":
        axis = cfg["axis"]
        axis = axis[0] if isinstance(axis, (list, tuple)) else axis
        c = in_shape[axis] if axis >= 0 else in_shape[len(in_shape) + axis]
        params = c * (2 + int(cfg.get("center", True)) + int(cfg.get("scale", True)))
        return in_shape, params, 0
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        h, w, c = in_shape
        ph, pw = _pair(cfg["pool_size"])
        sh, sw = _pair(cfg["strides"] or cfg["pool_size"])
        return (_conv_out(h, ph, sh, cfg["padding"]), _conv_out(w, pw, sw, cfg["padding"]), c), 0, 0
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        return ((1, 1, in_shape[-1]) if cfg.get("keepdims") else (in_shape[-1],)), 0, 0
    if kind == "Flatten":
        return (math.prod(in_shape),), 0, 0
    if kind in ("ReLU", "Activation", "Dropout", "InputLayer", "Softmax", "Rescaling"):
        return in_shape, 0, 0
    raise ConfigError(f"count_params_macs: layer type {kind} is not supported")


def count_params_macs(model) -> dict[str, int]:
    """Parameters and multiply-accumulates per inference of a chain-structured Keras model.

    Shapes are propagated from the model's input through each layer's own configuration (not read
    back from Keras), so comparing with ``model.count_params()`` is a real check.
    """
    shape = tuple(int(v) for v in model.inputs[0].shape[1:])
    params = macs = 0
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        shape, p, m = layer_footprint(layer, shape)
        params += p
        macs += m
    return {"params": int(params), "macs": int(macs)}
