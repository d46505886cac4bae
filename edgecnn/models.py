"""The model zoo: the reference ``seed`` CNN, the microcontroller ``edge`` CNN, and their footprint.

``build_model(arch, input_shape, n_classes)`` is the one entry point; the models take any image
shape (spectrograms (129, 44, 1), MNIST digits (28, 28, 1), ...), so nothing here knows about
vibration. ``count_params_macs(model)`` gives parameters and multiply-accumulates, counted by
``export.footprint`` (the same figures the bundle manifest carries; tests check them against Keras).

Training side only: imports Keras; the device side never imports this module.
"""

from __future__ import annotations

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
def count_params_macs(model) -> dict[str, int]:
    """Parameters and multiply-accumulates per inference (the same count the bundle manifest shows).

    One implementation serves training and export: ``export.footprint.count_params_macs``.
    """
    from export.footprint import count_params_macs as count

    params, macs = count(model)
    return {"params": params, "macs": macs}
