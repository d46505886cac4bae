"""Shared fixtures: a real (tiny) run directory and the bundle exported from it.

``tiny_run_dir`` trains a small real Keras CNN on synthetic windows for two epochs and writes the
run-directory contract (model.keras, config.json, calibration.npz); ``tiny_bundle`` exports it
with every default format. Both are session-scoped and take a few seconds each.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecnn.quiet import quiet_tensorflow_environment

quiet_tensorflow_environment()  # as the CLI does; subprocesses inherit edgecnn's choice


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory) -> Path:
    """A complete, real run directory (format edgecnn-run v1) with a tiny trained CNN."""
    from tests.util import write_tiny_run

    return write_tiny_run(tmp_path_factory.mktemp("tiny_run"))


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
    from tests.util import deterministic_training

    deterministic_training(0)
    out = tmp_path_factory.mktemp("trained_run_parent") / "run"
    train_run(load_windows(trained_data), out=out, arch="edge", epochs=15, seed=0, quiet=True, use_cache=False,
              data_source=str(trained_data))
    return out


@pytest.fixture(scope="session")
def trained_bundle(trained_run_dir, tmp_path_factory) -> Path:
    """The bundle exported from ``trained_run_dir`` with every default format."""
    from export.writer import export_bundle

    return export_bundle(trained_run_dir, tmp_path_factory.mktemp("trained_bundle_parent") / "bundle", quiet=True)


@pytest.fixture(scope="session")
def trained_fw_bundle(trained_data, tmp_path_factory) -> Path:
    """An edge CNN trained like ``trained_run_dir`` but on an explicit DSP config (log spectrogram),
    exported: the firmware tests' bundle, whatever the default config becomes."""
    from edgecnn.config import SpectrogramConfig
    from edgecnn.dataset import load_windows
    from edgecnn.train import train_run
    from export.writer import export_bundle

    run = tmp_path_factory.mktemp("trained_fw_run_parent") / "run"
    train_run(load_windows(trained_data), SpectrogramConfig(transform="log"), out=run, arch="edge", epochs=15,
              seed=0, quiet=True, use_cache=False, data_source=str(trained_data))
    return export_bundle(run, tmp_path_factory.mktemp("trained_fw_bundle_parent") / "bundle", quiet=True)


@pytest.fixture(scope="session")
def tiny_envelope_bundle(tmp_path_factory) -> Path:
    """The tiny CNN on the envelope feature (log, level column_mean; explicit config), exported."""
    from edgecnn.config import SpectrogramConfig
    from export.writer import export_bundle
    from tests.util import write_tiny_run

    cfg = SpectrogramConfig(transform="log", feature="envelope", level="column_mean")
    run = write_tiny_run(tmp_path_factory.mktemp("tiny_envelope_run"), cfg)
    return export_bundle(run, tmp_path_factory.mktemp("tiny_envelope_parent") / "bundle", quiet=True)
