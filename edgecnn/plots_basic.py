"""Small plots shared by commands (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.config import SpectrogramConfig
from edgecnn.fileio import save_figure


def plot_example_spectrograms(images: np.ndarray, labels: np.ndarray, classes: list[str],
                              cfg: SpectrogramConfig, path: str | Path, *, per_class: int = 3) -> Path:
    """A grid: one row per class, ``per_class`` example spectrograms each, frequency against time.

    Every panel shares one colour scale (0.5 to 99.5 percentile of the values shown, in dB), read from
    the one colour bar beside the grid.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(len(classes), per_class, figsize=(3.2 * per_class + 0.8, 2.6 * len(classes)),
                             squeeze=False, constrained_layout=True)
    extent = (0.0, cfg.window_duration_s, 0.0, cfg.fs / 2000.0)
    shown: dict[tuple[int, int], np.ndarray] = {}
    for row in range(len(classes)):
        members = np.flatnonzero(labels == row)
        if members.size:  # spread the examples over the class (different recordings)
            members = members[np.unique(np.linspace(0, members.size - 1, per_class).round().astype(int))]
        for col, member in enumerate(members[:per_class]):
            img = np.asarray(images[member, :, :, 0], dtype=np.float64)
            shown[row, col] = 20 * np.log10(np.maximum(img, 1e-9)) if cfg.transform == "magnitude" else img
    # One colour scale for every panel, so that the panels compare and one colour bar reads them all.
    values = np.concatenate([img.ravel() for img in shown.values()]) if shown else np.zeros(1)
    vmin, vmax = (float(v) for v in np.percentile(values, [0.5, 99.5]))
    image = None
    for row, name in enumerate(classes):
        for col in range(per_class):
            ax = axes[row, col]
            if (row, col) in shown:
                image = ax.imshow(shown[row, col], origin="lower", aspect="auto", extent=extent, cmap="magma",
                                  vmin=vmin, vmax=vmax)
            ax.set_title(f"class {name}", fontsize=9)
            ax.set_xlabel("time (s)", fontsize=8)
            ax.set_ylabel("kHz", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, label="magnitude (dB)", shrink=0.9, extend="both")
    try:
        return save_figure(fig, path, dpi=90)
    finally:
        plt.close(fig)


def plot_parity(model_level: dict, probabilities: dict[str, np.ndarray], classes: list[str],
                path: str | Path) -> Path:
    """Accuracy per format against the float reference, and int8 vs float probabilities of one class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    variants = model_level["variants"]
    reference = model_level["reference"]
    names = list(variants)
    fig, (ax_bar, ax_sc) = plt.subplots(1, 2, figsize=(12, 4.5), constrained_layout=True)
    acc = [variants[n]["accuracy"] for n in names]
    colours = ["tab:orange" if variants[n]["dtype"] == "int8" else "tab:blue" for n in names]
    ax_bar.barh(names, acc, color=colours)
    ax_bar.axvline(variants[reference]["accuracy"], color="k", ls="--", lw=1, label=f"reference ({reference})")
    lo = max(0.0, min(acc) - 0.05)
    ax_bar.set_xlim(lo, 1.0)
    for y, a in enumerate(acc):
        ax_bar.text(a, y, f" {a:.4f}", va="center", fontsize=8)
    ax_bar.set_xlabel("accuracy")
    ax_bar.set_title("accuracy per format (orange: int8)")
    ax_bar.invert_yaxis()
    ax_bar.legend(loc="lower left", fontsize=8)
    cls = len(classes) - 1
    ref = probabilities[reference][:, cls]
    for n in names:
        if variants[n]["dtype"] == "int8" and n in probabilities:
            ax_sc.scatter(ref, probabilities[n][:, cls], s=6, alpha=0.5, label=n)
    ax_sc.plot([0, 1], [0, 1], color="k", lw=0.8)
    ax_sc.set_xlabel(f"p({classes[cls]}) {reference}")
    ax_sc.set_ylabel(f"p({classes[cls]}) int8")
    ax_sc.set_title("int8 against float, per window")
    ax_sc.legend(fontsize=8)
    try:
        return save_figure(fig, path, dpi=90)
    finally:
        plt.close(fig)
