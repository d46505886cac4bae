"""Training plots written into a run directory (matplotlib, Agg backend, imported lazily).

Training curves, the confusion matrix, example spectrograms per class and the reference notebook's
last figure: a test window's spectrogram beside its predicted class probabilities. Every function
writes one PNG atomically and returns its path. No TensorFlow here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.config import SpectrogramConfig
from edgecnn.fileio import save_figure
from edgecnn.plots_basic import plot_example_spectrograms

__all__ = ["plot_confusion", "plot_example_spectrograms", "plot_prediction", "plot_training_curves"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    try:
        return save_figure(fig, path, dpi=90)
    finally:
        plt.close(fig)


def plot_training_curves(history: dict[str, list[float]], path: str | Path, *, best_epoch: int | None = None,
                         ) -> Path:
    """Loss and accuracy per epoch, training and validation, the kept epoch marked."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for ax, key, title in ((ax_loss, "loss", "loss"), (ax_acc, "accuracy", "accuracy")):
        for prefix, style in (("", "-"), ("val_", "--")):
            values = history.get(prefix + key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, label=(prefix + key).replace("_", " "))
        if best_epoch:
            ax.axvline(best_epoch, color="grey", lw=0.8, ls=":", label=f"kept (epoch {best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_title(title)
        ax.legend(fontsize=8)
    return _save(fig, Path(path))


def plot_confusion(matrix: np.ndarray | list, classes: list[str], path: str | Path, *,
                   title: str = "test confusion matrix") -> Path:
    """Counts with row-normalised shading: rows are true classes, columns predictions."""
    plt = _pyplot()
    cm = np.asarray(matrix, dtype=np.int64)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    size = 1.2 + 0.7 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1, size), constrained_layout=True)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center",
                    color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label="share of true class")
    return _save(fig, Path(path))


def plot_prediction(image: np.ndarray, probabilities: np.ndarray, classes: list[str], cfg: SpectrogramConfig,
                    path: str | Path, *, true_class: str | None = None) -> Path:
    """One window's model-input spectrogram beside its predicted class probabilities."""
    plt = _pyplot()
    fig, (ax_img, ax_bar) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True,
                                         gridspec_kw={"width_ratios": [2, 1]})
    extent = (0.0, cfg.window_duration_s, 0.0, cfg.fs / 2000.0)
    shown = ax_img.imshow(np.asarray(image)[..., 0] if np.ndim(image) == 3 else image, origin="lower",
                          aspect="auto", extent=extent, cmap="magma")
    fig.colorbar(shown, ax=ax_img, label="model input")
    ax_img.set_xlabel("time (s)")
    ax_img.set_ylabel("frequency (kHz)")
    ax_img.set_title(f"test window{f' (true class {true_class})' if true_class else ''}")
    probabilities = np.asarray(probabilities, dtype=float)
    colors = ["tab:orange" if i == int(np.argmax(probabilities)) else "tab:blue" for i in range(len(classes))]
    ax_bar.bar(range(len(classes)), probabilities, color=colors)
    ax_bar.set_xticks(range(len(classes)), classes)
    ax_bar.set_ylim(0.0, 1.0)
    ax_bar.set_ylabel("probability")
    ax_bar.set_title(f"predicted: {classes[int(np.argmax(probabilities))]}")
    return _save(fig, Path(path))
