"""Shared test helpers: run the real CLI in a subprocess, locate the shared real data, build a tiny run.

benchmarks/long_run.py and fault_table.py reuse ``write_tiny_run`` for their throwaway bundle.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def subprocess_env(**extra: str) -> dict[str, str]:
    """The current environment with this checkout first on PYTHONPATH (works from any cwd)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("TF_DETERMINISTIC_OPS", "1")  # training in a subprocess: same ops, same order, same sums
    env.update(extra)
    return env


def run_cli(*args: str, cwd: str | Path | None = None, timeout: float = 600, input: str | bytes | None = None,
            **env: str) -> subprocess.CompletedProcess:
    """Run ``python -m edgecnn ARGS`` and capture its output as text."""
    return subprocess.run([sys.executable, "-m", "edgecnn", *args], capture_output=True, text=input is None
                          or isinstance(input, str), cwd=cwd, timeout=timeout, input=input,
                          env=subprocess_env(**env))


def reseal_manifest(manifest: dict) -> dict:
    """Store the recomputed ``bundle_digest`` of a hand-edited manifest, as a forger would (the digest
    is no secret): the checks behind the digest (schema, the models' own view, signatures) then
    still meet the edit. A manifest whose content cannot be digested (NaN, ...) is left as it is."""
    from export.bundle import DIGEST_FIELD, bundle_digest

    try:
        manifest[DIGEST_FIELD] = bundle_digest(manifest)
    except (TypeError, ValueError):
        pass
    return manifest


def write_resealed(bundle: Path, manifest: dict) -> None:
    """Write a hand-edited manifest into ``bundle`` as a thorough forger would: digest recomputed,
    and the files that embed it (the C header) rewritten and re-listed, so only the checks of
    meaning (schema, the models' own view) and a signature can still catch the edit."""
    import json
    import re

    from export.bundle import C_DIGEST_MACRO, GENERATED_SECTION, file_record

    reseal_manifest(manifest)
    generated = manifest.get(GENERATED_SECTION)
    for name in generated if isinstance(generated, dict) else ():
        path = bundle / name
        if path.is_file() and C_DIGEST_MACRO in path.read_text(errors="replace"):
            path.write_text(re.sub(rf'(#define {C_DIGEST_MACRO} ")[0-9a-f]{{64}}"',
                                   lambda m: f'{m.group(1)}{manifest.get("bundle_digest")}"', path.read_text()))
            if isinstance(generated[name], dict):
                generated[name].update(file_record(path))
    (bundle / "manifest.json").write_text(json.dumps(manifest))


TINY_CLASSES = ["A", "B"]


def deterministic_training(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TensorFlow's ops deterministic (this process).

    Without op determinism, multi-threaded reductions sum in a varying order and a trained fixture
    differs from machine to machine in its last bits, enough to flip a window on the decision
    boundary. Once enabled it stays on for the test session.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


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


def write_tiny_run(run: Path, cfg=None) -> Path:
    """A complete, real run directory (format edgecnn-run v1): a tiny CNN trained 2 epochs on synth windows
    (DSP config ``cfg``, un-normalised; default the log spectrogram)."""
    import json

    import numpy as np

    from edgecnn import dsp, rundir, synth
    from edgecnn.config import SpectrogramConfig

    data = synth.generate(n=96, seed=0, n_recordings=8)
    windows = data["signal"].astype(np.float32)
    labels = data["label"].argmax(axis=1).astype(np.int64)
    cfg = cfg or SpectrogramConfig(transform="log")
    mean, std = dsp.fit_normalisation(dsp.features(windows, cfg, normalise=False))
    cfg = cfg.with_normalisation(mean, std)
    images = dsp.features(windows, cfg)

    deterministic_training(0)
    model = build_tiny_model(cfg.input_shape, len(TINY_CLASSES))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, epochs=2, batch_size=16, verbose=0)

    run.mkdir(parents=True, exist_ok=True)
    model.save(run / rundir.MODEL_FILE)
    doc = rundir.config_document(cfg, TINY_CLASSES, arch="tiny", label_map=None, seed=0,
                                 data={"source": "synth n=96 seed=0", "windows": int(len(windows))})
    (run / rundir.CONFIG_FILE).write_text(json.dumps(doc, indent=2))
    np.savez(run / rundir.CALIBRATION_FILE, windows=windows, labels=labels)
    return run
