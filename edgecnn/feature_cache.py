"""Spectrogram images computed once per (windows, DSP config) and kept on disk.

The key is the sha256 of the windows' bytes, shape and dtype plus the config's JSON *without* its
normalisation: images are stored un-normalised, so refitting the normalisation on another split
reuses them. ``normalise(images, cfg)`` then applies the config's constants, giving exactly what
``dsp.features(windows, cfg)`` gives (a test holds them equal).

numpy only; the default folder is ``$EDGECNN_CACHE_DIR`` or ``~/.cache/edgecnn/spectrograms``.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgecnn import dsp
from edgecnn.config import SpectrogramConfig


def default_cache_dir() -> Path:
    env = os.environ.get("EDGECNN_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "edgecnn" / "spectrograms"


def cache_key(windows: np.ndarray, cfg: SpectrogramConfig) -> str:
    """Hex digest identifying the un-normalised images of these windows under this config."""
    windows = np.ascontiguousarray(windows)
    digest = hashlib.sha256()
    digest.update(f"{windows.shape}|{windows.dtype.str}|".encode())
    digest.update(cfg.replace(norm_mean=(0.0,), norm_std=(1.0,)).to_json().encode())
    digest.update(memoryview(windows).cast("B"))
    return digest.hexdigest()


def raw_features(windows: np.ndarray, cfg: SpectrogramConfig, *, cache_dir: str | Path | None = None,
                 use_cache: bool = True, progress: Callable[[int, int], None] | None = None,
                 ) -> tuple[np.ndarray, bool]:
    """Un-normalised feature images (N, n_freq, n_frames, 1) float32 and whether the cache had them."""
    if not use_cache:
        return dsp.features(windows, cfg, normalise=False, progress=progress), False
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = folder / f"{cache_key(windows, cfg)}.npy"
    if path.is_file():
        try:
            images = np.load(path, allow_pickle=False)
            if images.shape == (len(windows), *cfg.input_shape) and images.dtype == np.float32:
                return images, True
        except (OSError, ValueError):
            pass  # a damaged entry is recomputed and replaced below
    images = dsp.features(windows, cfg, normalise=False, progress=progress)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{path.stem}.{uuid.uuid4().hex}.tmp.npy"
        np.save(tmp, images)
        tmp.replace(path)
    except OSError:
        pass  # an unwritable cache only costs time next run
    return images, False


def normalise(images: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """Apply the config's normalisation to un-normalised images (N, n_freq, n_frames, 1)."""
    if not cfg.is_normalised:
        return np.asarray(images, dtype=np.float32)
    mean = np.asarray(cfg.norm_mean, dtype=np.float64).reshape(-1, 1, 1)
    std = np.asarray(cfg.norm_std, dtype=np.float64).reshape(-1, 1, 1)
    return ((images - mean) / std).astype(np.float32)
