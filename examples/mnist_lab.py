"""The reference notebook's first lab: a two-convolution CNN on 28x28 MNIST digits (about 99 %).

It runs edgecnn's own model and training code (``build_model('seed', ...)`` and ``edgecnn.fit``):
nothing there is tied to spectrograms. Nothing is downloaded: pass a local ``mnist.npz`` with
``x_train``, ``y_train``, ``x_test``, ``y_test`` (the layout of keras.datasets.mnist's file).

    python examples/mnist_lab.py PATH/TO/mnist.npz [--epochs 5] [--seed 0] [--quiet]

Prints one JSON line: test accuracy, sample counts, parameters, MACs and seconds per epoch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgecnn.errors import EdgeCNNError, InputError  # noqa: E402

MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")


def load_mnist_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test) from a local MNIST npz; images scaled to [0, 1]."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in MNIST_KEYS if k not in data]
            if missing:
                raise InputError(f"{path}: missing {missing}; an MNIST npz holds {list(MNIST_KEYS)}")
            x_train, y_train, x_test, y_test = (np.asarray(data[k]) for k in MNIST_KEYS)
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable MNIST npz ({exc})") from None
    scale = 255.0 if x_train.max() > 1.0 else 1.0
    return x_train / scale, y_train, x_test / scale, y_test


def run_lab(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
            epochs: int = 5, seed: int = 0, batch_size: int = 64, val_fraction: float = 0.1,
            quiet: bool = False) -> dict:
    """Train the two-convolution CNN on images (N, H, W) or (N, H, W, 1); returns the test results."""
    from edgecnn.fit import FitOptions, fit, predict
    from edgecnn.models import build_model, count_params_macs

    def as_images(x):
        x = np.asarray(x, dtype=np.float32)
        return x[..., None] if x.ndim == 3 else x

    x_train, x_test = as_images(x_train), as_images(x_test)
    y_train, y_test = np.asarray(y_train, dtype=np.int64), np.asarray(y_test, dtype=np.int64)
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y_train))
    n_val = int(round(val_fraction * len(order)))
    val, train = order[:n_val], order[n_val:]
    options = FitOptions(epochs=epochs, batch_size=batch_size, seed=seed, patience=3, quiet=quiet)
    result = fit(lambda: build_model("seed", x_train.shape[1:], n_classes), x_train[train], y_train[train],
                 x_train[val], y_train[val], n_classes=n_classes, options=options)
    accuracy = float(np.mean(predict(result.model, x_test).argmax(axis=1) == y_test))
    return {"test_accuracy": round(accuracy, 4), "n_train": int(train.size), "n_val": int(val.size),
            "n_test": int(len(y_test)), "epochs_run": len(result.history["loss"]),
            **count_params_macs(result.model), "seconds_per_epoch": round(result.seconds_per_epoch, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("npz", help="local MNIST .npz (x_train, y_train, x_test, y_test)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        x_train, y_train, x_test, y_test = load_mnist_npz(args.npz)
        result = run_lab(x_train, y_train, x_test, y_test, epochs=args.epochs, seed=args.seed, quiet=args.quiet)
    except EdgeCNNError as exc:
        print(f"mnist_lab: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
