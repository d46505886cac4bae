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
FEATURE_VERSION = 2
#: 1: the spectrogram only (configs without the envelope fields); 2: adds ``feature`` and ``level``.
SUPPORTED_FEATURE_VERSIONS = (1, 2)

TRANSFORMS = ("magnitude", "log")
DETRENDS = ("constant", "none")
FEATURES = ("spectrogram", "envelope")
LEVELS = ("none", "column_mean")


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
    feature: str = "spectrogram"
    """``spectrogram``: the image is the STFT (rows = frequency bins, columns = frames).
    ``envelope``: the image is a rolling envelope spectrum (rows = modulation frequencies, columns
    = spans of ``envelope_frames`` frames): each frame's band ``envelope_band_hz`` is demodulated
    (analytic signal, magnitude, decimation) and the spectrum of the envelope shows the rate at
    which impacts repeat (a bearing's defect frequency), whatever resonance they ring. docs/dsp.md."""
    envelope_band_hz: tuple[float, float] = (1000.0, 6000.0)
    """Band (Hz) demodulated by the envelope feature: the resonances that impacts excite."""
    envelope_decimation: int = 16
    """Envelope samples averaged into one (a divisor of the hop): hop / decimation values per frame."""
    envelope_frames: int = 18
    """Frames of envelope per image column (18 x 14 values = 0.315 s at the defaults)."""
    envelope_nfft: int = 256
    """Length of the envelope spectrum's rfft (zero-padded): rows 1 .. ``envelope_nfft // 2`` are the image."""
    level: str = "none"
    """``column_mean`` subtracts each image column's mean (dB; needs ``transform='log'``): the
    spectrum's shape stays, the overall level (sensor gain, load) goes."""

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
        if self.feature not in FEATURES:
            raise ConfigError(f"Parameter feature={self.feature!r} must be one of {FEATURES}")
        if self.level not in LEVELS:
            raise ConfigError(f"Parameter level={self.level!r} must be one of {LEVELS}")
        if self.level != "none" and self.transform != "log":
            raise ConfigError(f"Parameter level={self.level!r} needs transform='log' (levels are in dB)")
        self._check_envelope()
        rows = self.image_rows
        for name in ("norm_mean", "norm_std"):
            value = getattr(self, name)
            if len(value) not in (1, rows):
                raise ConfigError(
                    f"Parameter {name} has {len(value)} values; it needs 1 or one per image row ({rows})")
            if not all(math.isfinite(v) for v in value):
                raise ConfigError(f"Parameter {name} must hold finite numbers")
        if min(self.norm_std) <= 0:
            raise ConfigError(f"Parameter norm_std must be > 0 everywhere (min {min(self.norm_std)})")
        try:
            window_values(window, nperseg)
        except (ValueError, IndexError) as exc:  # IndexError: scipy's get_window(()) on an empty tuple
            raise ConfigError(f"Parameter window={window!r} is not a scipy window: {exc}") from None

    def _check_envelope(self) -> None:
        band = self.envelope_band_hz
        if isinstance(band, list):
            band = tuple(band)
            object.__setattr__(self, "envelope_band_hz", band)
        if (not isinstance(band, tuple) or len(band) != 2
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in band)):
            raise ConfigError(f"Parameter envelope_band_hz={band!r} must be two numbers (Hz)")
        object.__setattr__(self, "envelope_band_hz", (float(band[0]), float(band[1])))
        if self.feature != "envelope":  # the envelope's fields only need to fit the frames it uses
            return
        decimation, span, nfft = self.envelope_decimation, self.envelope_frames, self.envelope_nfft
        if not _is_int(decimation) or decimation < 1 or self.hop % decimation:
            raise ConfigError(f"Parameter envelope_decimation={decimation!r} must be a divisor of the hop "
                              f"({self.hop})")
        if not _is_int(span) or not 2 <= span <= self.n_frames:
            raise ConfigError(f"Parameter envelope_frames={span!r} must be an integer in [2, n_frames="
                              f"{self.n_frames}]")
        if not _is_int(nfft) or nfft < span * (self.hop // decimation):
            raise ConfigError(f"Parameter envelope_nfft={nfft!r} must be an integer >= the envelope values "
                              f"per column ({span * (self.hop // decimation)})")
        low, high = self.envelope_bins
        if not 0 < band[0] < band[1] <= self.fs / 2 or high <= low:
            raise ConfigError(f"Parameter envelope_band_hz={band!r} must satisfy 0 < low < high <= fs/2 "
                              f"and hold at least two FFT bins (bin width {self.fs / self.nperseg:g} Hz)")

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
    def image_rows(self) -> int:
        """Rows of the model's image: ``n_freq`` (spectrogram) or ``envelope_nfft // 2`` (the
        envelope spectrum without its DC row: the envelope's mean is removed)."""
        return self.n_freq if self.feature == "spectrogram" else self.envelope_nfft // 2

    @property
    def image_cols(self) -> int:
        """Columns of the image: ``n_frames`` (spectrogram) or ``n_frames - envelope_frames + 1``."""
        return self.n_frames if self.feature == "spectrogram" else self.n_frames - self.envelope_frames + 1

    @property
    def envelope_per_frame(self) -> int:
        """Envelope values each frame contributes: ``hop // envelope_decimation``."""
        return self.hop // self.envelope_decimation

    @property
    def envelope_bins(self) -> tuple[int, int]:
        """First and last FFT bin (inclusive) of ``envelope_band_hz`` in an ``nperseg`` frame."""
        low, high = self.envelope_band_hz
        return (max(1, math.ceil(low * self.nperseg / self.fs - 1e-9)),
                min(self.nperseg // 2 - 1, math.floor(high * self.nperseg / self.fs + 1e-9)))

    @property
    def envelope_rate_hz(self) -> float:
        """Sample rate of the envelope: ``fs / envelope_decimation``."""
        return self.fs / self.envelope_decimation

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Model input shape, channels last: (image_rows, image_cols, 1)."""
        return (self.image_rows, self.image_cols, 1)

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
        out["envelope_band_hz"] = list(self.envelope_band_hz)
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
