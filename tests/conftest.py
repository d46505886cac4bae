"""Shared fixtures: a real (tiny) run directory and the bundle exported from it.

``tiny_run_dir`` trains a small real Keras CNN on synthetic windows for two epochs and writes the
run-directory contract (model.keras, config.json, calibration.npz); ``tiny_bundle`` exports it
with every default format. Both are session-scoped and take a few seconds each.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TINY_CLASSES = ["A", "B"]


def build_tiny_model(input_shape: tuple[int, ...], n_classes: int = 2):
    """Conv2D stride 2 -> Conv2D stride 2 -> global average pooling -> Dense softmax."""
    import keras

    return keras.Sequential([
        keras.Input(shape=input_shape),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv1"),
        keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv2"),
        keras.layers.GlobalAveragePooling2D(name="pool"),
        keras.layers.Dense(n_classes, activation="softmax", name="head"),
    ], name="tiny")


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory) -> Path:
    """A complete, real run directory (format edgecnn-run v1) with a tiny trained CNN."""
    import keras

    from edgecnn import dsp, rundir, synth
    from edgecnn.config import SpectrogramConfig

    data = synth.generate(n=96, seed=0, n_recordings=8)
    windows = data["signal"].astype(np.float32)
    labels = data["label"].argmax(axis=1).astype(np.int64)
    cfg = SpectrogramConfig(transform="log")
    mean, std = dsp.fit_normalisation(dsp.features(windows, cfg, normalise=False))
    cfg = cfg.with_normalisation(mean, std)
    images = dsp.features(windows, cfg)

    keras.utils.set_random_seed(0)
    model = build_tiny_model(cfg.input_shape, len(TINY_CLASSES))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, epochs=2, batch_size=16, verbose=0)

    run = tmp_path_factory.mktemp("tiny_run")
    model.save(run / rundir.MODEL_FILE)
    doc = rundir.config_document(cfg, TINY_CLASSES, arch="tiny", label_map=None, seed=0,
                                 data={"source": "synth n=96 seed=0", "windows": int(len(windows))})
    (run / rundir.CONFIG_FILE).write_text(json.dumps(doc, indent=2))
    np.savez(run / rundir.CALIBRATION_FILE, windows=windows, labels=labels)
    return run


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run_dir, tmp_path_factory) -> Path:
    """The bundle exported from ``tiny_run_dir`` with every default format."""
    from export.writer import export_bundle

    return export_bundle(tiny_run_dir, tmp_path_factory.mktemp("tiny_bundle_parent") / "bundle", quiet=True)


@pytest.fixture(scope="session")
def trained_data(tmp_path_factory) -> Path:
    """A small, easy synthetic data set (48 recordings, 480 windows) a compact CNN learns in seconds."""
    from edgecnn import synth

    return synth.write_pickle(tmp_path_factory.mktemp("trained_data") / "data.pkl",
                              synth.generate(n=480, seed=3, n_recordings=48, difficulty=0.3))


@pytest.fixture(scope="session")
def trained_run_dir(trained_data, tmp_path_factory) -> Path:
    """The real training pipeline (edge architecture, 15 epochs) on ``trained_data``: a model worth comparing."""
    from edgecnn.dataset import load_windows
    from edgecnn.train import train_run

    out = tmp_path_factory.mktemp("trained_run_parent") / "run"
    train_run(load_windows(trained_data), out=out, arch="edge", epochs=15, seed=0, quiet=True, use_cache=False,
              data_source=str(trained_data))
    return out


@pytest.fixture(scope="session")
def trained_bundle(trained_run_dir, tmp_path_factory) -> Path:
    """The bundle exported from ``trained_run_dir`` with every default format."""
    from export.writer import export_bundle

    return export_bundle(trained_run_dir, tmp_path_factory.mktemp("trained_bundle_parent") / "bundle", quiet=True)
