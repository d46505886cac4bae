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

    Designed for the envelope feature (rows = modulation frequency, columns = time) and for
    generalising to machines, loads and fault sizes it never saw (docs/training.md has the
    cross-validation behind each choice):
    - the columns are averaged first: a defect frequency is a steady line, and the average of
      the column spectra is a cleaner spectrum than any one of them;
    - three 1-D convolutions along frequency (8, 16, 16 channels; kernels 7, 5, 5; max pooling by
      2 twice): local line shapes (a peak and its neighbours, harmonics a few rows apart);
    - two readouts, concatenated: the flattened maps ("which line, where": a defect frequency
      scales with speed but stays in its region) and a global max ("such a line anywhere"), then
      dropout and one dense layer.
    Wider or deeper variants, and coarser pooling, scored lower on left-out fault sizes and loads.
    On a spectrogram input (another feature) the same layers apply to its time-averaged spectrum.
    Batch normalisation is folded into the convolutions at export (free on the device) and
    synchronised across replicas so multi-worker training keeps identical statistics.
    """
    keras = _keras()
    layers = keras.layers

    def conv(x, filters, kernel):
        x = layers.Conv2D(filters, (kernel, 1), padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9, synchronized=True)(x)
        return layers.ReLU()(x)

    inputs = keras.Input(tuple(input_shape))
    x = layers.AveragePooling2D((1, int(input_shape[1])))(inputs)
    x = layers.MaxPooling2D((2, 1))(conv(x, 8, 7))
    x = layers.MaxPooling2D((2, 1))(conv(x, 16, 5))
    x = conv(x, 16, 5)
    where = layers.Flatten()(x)
    anywhere = layers.Flatten()(layers.MaxPooling2D((x.shape[1], 1))(x))
    x = layers.Concatenate()([where, anywhere])
    x = layers.Dropout(0.3)(x)
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
