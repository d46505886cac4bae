"""The reference notebook's first lab (examples/mnist_lab.py) on scikit-learn's bundled 8x8 digits."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_lab():
    spec = importlib.util.spec_from_file_location("mnist_lab", ROOT / "examples" / "mnist_lab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_mnist_lab_reaches_95_percent_on_bundled_digits(tmp_path, capsys):
    datasets = pytest.importorskip("sklearn.datasets")
    from sklearn.model_selection import train_test_split

    digits = datasets.load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)  # stored like MNIST: 0..255
    x_train, x_test, y_train, y_test = train_test_split(images, digits.target, test_size=0.25,
                                                        stratify=digits.target, random_state=0)
    path = tmp_path / "digits.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)

    lab = load_lab()
    assert lab.main([str(path), "--epochs", "20", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n_test"] == len(y_test) == 450
    assert result["test_accuracy"] >= 0.95, result


def test_mnist_lab_refuses_a_file_without_mnist_arrays(tmp_path, capsys):
    path = tmp_path / "other.npz"
    np.savez(path, signal=np.zeros(4))
    assert load_lab().main([str(path)]) == 2
    assert "missing ['x_train', 'y_train', 'x_test', 'y_test']" in capsys.readouterr().err
