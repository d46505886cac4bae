"""The DSP configuration shared by training and the device: one frozen, validated dataclass.

Framing convention (written once, used everywhere): frame ``p`` of a window covers samples
``[p * hop, p * hop + nperseg)``; frames are causal; the sample count is the clock.
A window of ``window_samples`` samples yields ``n_frames = 1 + (window_samples - nperseg) // hop``
frames and ``n_freq = nperseg // 2 + 1`` frequency bins (scipy.signal.spectrogram's layout).

This module imports numpy and scipy only: the device side imports it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Any

import numpy as np

from edgecnn.errors import ConfigError

#: Bump whenever the features computed for the same config change. Bundles carry it; the device
#: refuses a bundle whose feature version it does not know.
FEATURE_VERSION = 1
SUPPORTED_FEATURE_VERSIONS = (1,)

TRANSFORMS = ("magnitude", "log")
DETRENDS = ("constant", "none")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SpectrogramConfig:
    """How a window of samples becomes a spectrogram image (defaults: scipy's, 129 x 44)."""

    fs: float = 12800.0
    """Sample rate in Hz that features are computed at; recordings are resampled to it."""
    nperseg: int = 256
    """Samples per STFT frame."""
    noverlap: int = 32
    """Samples shared by consecutive frames; the hop is ``nperseg - noverlap``."""
    window: str | tuple = ("tukey", 0.25)
    """Window spec as scipy.signal.get_window takes it (periodic)."""
    detrend: str = "constant"
    """``constant`` removes each frame's mean before windowing; ``none`` keeps it."""
    window_samples: int = 10000
    """Samples per classified window (one image)."""
    transform: str = "magnitude"
    """``magnitude`` (as the reference notebook) or ``log`` (dB with a fixed floor)."""
    log_floor_db: float = -120.0
    """Floor in dB applied before the log transform, so silence maps to a constant."""
    norm_mean: tuple[float, ...] = (0.0,)
    """Normalisation offset: one value, or one per frequency bin; fitted on training data."""
    norm_std: tuple[float, ...] = (1.0,)
    """Normalisation scale, same shape rules as ``norm_mean``; every value > 0."""

    def __post_init__(self) -> None:
        window = self.window
        if isinstance(window, list):
            window = tuple(window)
            object.__setattr__(self, "window", window)
        for name in ("norm_mean", "norm_std"):
            value = getattr(self, name)
            try:
                value = tuple(float(v) for v in np.ravel(np.asarray(value, dtype=float)))
            except (TypeError, ValueError):
                raise ConfigError(f"Parameter {name}={value!r} must be a sequence of numbers") from None
            object.__setattr__(self, name, value)
        fs, nperseg, noverlap = self.fs, self.nperseg, self.noverlap
        if not isinstance(fs, (int, float)) or not math.isfinite(fs) or fs <= 0:
            raise ConfigError(f"Parameter {fs=} must be a finite number of Hz > 0")
        object.__setattr__(self, "fs", float(fs))
        if not _is_int(nperseg) or nperseg < 2:
            raise ConfigError(f"Parameter {nperseg=} must be an integer >= 2")
        if not _is_int(noverlap) or not 0 <= noverlap < nperseg:
            raise ConfigError(f"Parameter {noverlap=} must be an integer in [0, nperseg={nperseg})")
        window_samples = self.window_samples
        if not _is_int(window_samples) or window_samples < nperseg:
            raise ConfigError(f"Parameter {window_samples=} must be an integer >= nperseg={nperseg}")
        if self.detrend not in DETRENDS:
            raise ConfigError(f"Parameter detrend={self.detrend!r} must be one of {DETRENDS}")
        if self.transform not in TRANSFORMS:
            raise ConfigError(f"Parameter transform={self.transform!r} must be one of {TRANSFORMS}")
        if not math.isfinite(self.log_floor_db):
            raise ConfigError(f"Parameter log_floor_db={self.log_floor_db!r} must be finite")
        n_freq = nperseg // 2 + 1
        for name in ("norm_mean", "norm_std"):
            value = getattr(self, name)
            if len(value) not in (1, n_freq):
                raise ConfigError(
                    f"Parameter {name} has {len(value)} values; it needs 1 or n_freq={n_freq}")
            if not all(math.isfinite(v) for v in value):
                raise ConfigError(f"Parameter {name} must hold finite numbers")
        if min(self.norm_std) <= 0:
            raise ConfigError(f"Parameter norm_std must be > 0 everywhere (min {min(self.norm_std)})")
        try:
            window_values(window, nperseg)
        except (ValueError, IndexError) as exc:  # IndexError: scipy's get_window(()) on an empty tuple
            raise ConfigError(f"Parameter window={window!r} is not a scipy window: {exc}") from None

    # Derived values -------------------------------------------------------------------------
    @property
    def hop(self) -> int:
        """Samples between the starts of consecutive frames."""
        return self.nperseg - self.noverlap

    @property
    def n_freq(self) -> int:
        """Frequency bins per frame (one-sided rfft)."""
        return self.nperseg // 2 + 1

    @property
    def n_frames(self) -> int:
        """Frames per window: ``1 + (window_samples - nperseg) // hop``."""
        return 1 + (self.window_samples - self.nperseg) // self.hop

    @property
    def frame_period_s(self) -> float:
        """Seconds between consecutive frames."""
        return self.hop / self.fs

    @property
    def window_duration_s(self) -> float:
        """Seconds of signal in one classified window."""
        return self.window_samples / self.fs

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Model input shape, channels last: (n_freq, n_frames, 1)."""
        return (self.n_freq, self.n_frames, 1)

    @property
    def window_array(self) -> np.ndarray:
        """The analysis window as float64 (read-only)."""
        return window_values(self.window, self.nperseg)

    @property
    def is_normalised(self) -> bool:
        """True when normalisation constants other than the identity are set."""
        return self.norm_mean != (0.0,) or self.norm_std != (1.0,)

    # Conversions ------------------------------------------------------------------------------
    def with_normalisation(self, mean: Any, std: Any) -> SpectrogramConfig:
        """A copy with normalisation constants (scalars or one per frequency bin)."""
        return dataclasses.replace(self, norm_mean=tuple(np.ravel(mean)), norm_std=tuple(np.ravel(std)))

    def replace(self, **changes: Any) -> SpectrogramConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict, including ``feature_version``."""
        out = dataclasses.asdict(self)
        out["window"] = list(self.window) if isinstance(self.window, tuple) else self.window
        out["norm_mean"] = list(self.norm_mean)
        out["norm_std"] = list(self.norm_std)
        out["feature_version"] = FEATURE_VERSION
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SpectrogramConfig:
        """Inverse of :meth:`to_dict`; refuses unknown keys and unknown feature versions."""
        if not isinstance(data, dict):
            raise ConfigError(f"A DSP config must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        version = data.pop("feature_version", FEATURE_VERSION)
        if version not in SUPPORTED_FEATURE_VERSIONS:
            raise ConfigError(
                f"feature_version {version!r} is not supported by this edgecnn "
                f"(supported: {list(SUPPORTED_FEATURE_VERSIONS)}); upgrade edgecnn")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown DSP config keys {unknown}; known keys: {sorted(known)}")
        if isinstance(data.get("window"), list):
            data["window"] = tuple(data["window"])
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"Invalid DSP config: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> SpectrogramConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"DSP config is not valid JSON: {exc}") from None
        return cls.from_dict(data)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@functools.lru_cache(maxsize=32)
def window_values(window: str | tuple, nperseg: int) -> np.ndarray:
    """The periodic analysis window, as scipy.signal.spectrogram builds it (cached, read-only)."""
    values = _tukey_periodic(window, nperseg)
    if values is None:
        from scipy.signal import get_window

        values = np.asarray(get_window(window, nperseg), dtype=np.float64)
    values.setflags(write=False)
    return values


def _tukey_periodic(window, nperseg: int) -> np.ndarray | None:
    """``get_window(("tukey", alpha), nperseg)`` (periodic) without importing scipy.signal: the
    default window's values, computed exactly as scipy computes them (tests compare bit for bit).
    Importing scipy.signal costs the device process about 1 s and 70 MB; None for any other window."""
    if not (isinstance(window, tuple) and len(window) == 2 and window[0] == "tukey"
            and isinstance(window[1], (int, float)) and 0 < window[1] < 1 and _is_int(nperseg)
            and nperseg > 1):
        return None
    alpha, m = float(window[1]), int(nperseg) + 1  # periodic: one point longer, then truncated
    n = np.arange(0, m, dtype=np.float64)
    width = int(math.floor(alpha * (m - 1) / 2.0))
    n1, n2, n3 = n[0:width + 1], n[width + 1:m - width - 1], n[m - width - 1:]
    w1 = 0.5 * (1 + np.cos(np.pi * (-1 + 2.0 * n1 / alpha / (m - 1))))
    w2 = np.ones(n2.shape)
    w3 = 0.5 * (1 + np.cos(np.pi * (-2.0 / alpha + 1 + 2.0 * n3 / alpha / (m - 1))))
    return np.concatenate((w1, w2, w3))[:-1]
