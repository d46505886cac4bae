"""Small plots shared by commands (matplotlib, Agg backend, imported lazily)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecnn.config import SpectrogramConfig


def plot_example_spectrograms(images: np.ndarray, labels: np.ndarray, classes: list[str],
                              cfg: SpectrogramConfig, path: str | Path, *, per_class: int = 3) -> Path:
    """A grid: one row per class, ``per_class`` example spectrograms each, frequency against time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(len(classes), per_class, figsize=(3.2 * per_class, 2.6 * len(classes)),
                             squeeze=False, constrained_layout=True)
    extent = (0.0, cfg.window_duration_s, 0.0, cfg.fs / 2000.0)
    for row, name in enumerate(classes):
        members = np.flatnonzero(labels == row)
        if members.size:  # spread the examples over the class (different recordings)
            members = members[np.unique(np.linspace(0, members.size - 1, per_class).round().astype(int))]
        for col in range(per_class):
            ax = axes[row, col]
            if col < members.size:
                img = images[members[col], :, :, 0]
                if cfg.transform == "magnitude":
                    img = 20 * np.log10(np.maximum(img, 1e-9))
                ax.imshow(img, origin="lower", aspect="auto", extent=extent, cmap="magma")
            ax.set_title(f"class {name}", fontsize=9)
            ax.set_xlabel("time (s)", fontsize=8)
            ax.set_ylabel("kHz", fontsize=8)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path
