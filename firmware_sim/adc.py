"""The sensor's analog-to-digital converter: physical units in, int16 counts out, clipping counted.

A signed ``bits``-bit converter (16 by default) spans ``[-full_scale, full_scale)`` in physical
units (``full_scale=16.0`` is a +/-16 g accelerometer): one count is ``full_scale / 2**(bits-1)``
units. ``to_counts`` rounds to the nearest count, clips what falls outside the code range (and
counts those samples as saturated), and can add seeded Gaussian noise in counts before rounding,
as a real converter's input noise would. A converter of fewer than 16 bits keeps its own LSB
(codes in ``[-2**(bits-1), 2**(bits-1) - 1]``, stored in int16), so ``to_units(counts) = counts *
lsb`` always; the q15 DSP path's block-floating-point shift lifts such frames to full q15 range.

Non-finite inputs never reach the DSP: NaN reads as code 0 and +/-Inf as the end codes; both
are counted (``invalid``) so the stream can mark the affected decisions.

With noise on, quantise every sample exactly once (at the source), then hand the int16 counts to
the DSP backends: quantising overlapping frames separately would draw different noise for the
same sample, which no device does.

Device side: numpy only; never imports TensorFlow.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edgecnn.errors import ConfigError, InputError

ADC_FORMAT = "edgecnn-adc"


class ADC:
    """A signed converter with saturation and optional noise; counters accumulate until ``reset()``."""

    def __init__(self, *, full_scale: float = 16.0, bits: int = 16, units: str = "g",
                 noise_lsb: float = 0.0, seed: int = 0) -> None:
        if not isinstance(full_scale, (int, float)) or not math.isfinite(full_scale) or full_scale <= 0:
            raise ConfigError(
                f"ADC full_scale={full_scale!r} must be a finite number > 0 (e.g. 16.0 for +/-16 g)")
        if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 16:
            raise ConfigError(f"ADC bits={bits!r} must be an integer in [2, 16]: counts are stored as int16")
        if not isinstance(noise_lsb, (int, float)) or not math.isfinite(noise_lsb) or noise_lsb < 0:
            raise ConfigError(
                f"ADC noise_lsb={noise_lsb!r} must be a finite number >= 0 (RMS noise in counts)")
        # Configuration (fixed for the converter's life).
        self.full_scale = float(full_scale)
        self.bits = bits
        self.units = str(units)
        self.noise_lsb = float(noise_lsb)
        self.seed = int(seed)
        self.code_min = -(1 << (bits - 1))
        self.code_max = (1 << (bits - 1)) - 1
        self.lsb = self.full_scale / (1 << (bits - 1))
        # Working state.
        self.reset()

    def reset(self) -> None:
        """Zero the counters and restart the noise sequence from the seed."""
        self._rng = np.random.default_rng(self.seed)
        self.samples = 0
        self.saturated = 0
        self.invalid = 0

    @property
    def max_units(self) -> float:
        """Largest value that converts without clipping (the top code), in physical units."""
        return self.code_max * self.lsb

    def to_counts(self, x: np.ndarray) -> np.ndarray:
        """Quantise physical values to int16 counts (any shape); clipped samples are counted."""
        return self.convert(x)[0]

    def convert(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`to_counts`, and also which samples clipped (bool, same shape as ``x``).

        A stream needs the mask, not just the count: a decision whose window holds a clipped
        sample is marked invalid.
        """
        values = np.asarray(x, dtype=np.float64)
        finite = np.isfinite(values)
        n_invalid = int(values.size - np.count_nonzero(finite))
        scaled = values / self.lsb
        if self.noise_lsb > 0:
            scaled = scaled + self._rng.normal(0.0, self.noise_lsb, size=scaled.shape)
        if n_invalid:
            # NaN has no code: read it as 0; +/-Inf rail like any out-of-range input.
            scaled = np.where(np.isnan(scaled), 0.0, scaled)
        codes = np.rint(np.clip(scaled, self.code_min - 1.0, self.code_max + 1.0))
        clipped = (codes < self.code_min) | (codes > self.code_max)
        self.samples += int(values.size)
        self.saturated += int(np.count_nonzero(clipped & finite))
        self.invalid += n_invalid
        return np.clip(codes, self.code_min, self.code_max).astype(np.int16), clipped & finite

    def to_units(self, counts: np.ndarray) -> np.ndarray:
        """Counts back to physical units, float32 (what a float firmware pipeline starts from)."""
        counts = np.asarray(counts)
        if not np.issubdtype(counts.dtype, np.integer):
            raise InputError(f"ADC.to_units expects integer counts, got dtype {counts.dtype}")
        return (counts.astype(np.float64) * self.lsb).astype(np.float32)

    def level_dbfs(self, x: np.ndarray) -> float:
        """Peak level of ``x`` in dBFS (0 dBFS = the top code); -inf for silence."""
        peak = float(np.max(np.abs(np.asarray(x, dtype=np.float64)))) if np.size(x) else 0.0
        return 20.0 * math.log10(peak / self.max_units) if peak > 0 else -math.inf

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description (what a bundle manifest stores)."""
        return {"format": ADC_FORMAT, "full_scale": self.full_scale, "bits": self.bits,
                "units": self.units, "noise_lsb": self.noise_lsb, "seed": self.seed}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ADC:
        """Inverse of :meth:`to_dict`; refuses unknown keys and other formats."""
        if not isinstance(data, dict):
            raise ConfigError(f"An ADC description must be a JSON object, got {type(data).__name__}")
        data = dict(data)
        fmt = data.pop("format", ADC_FORMAT)
        if fmt != ADC_FORMAT:
            raise ConfigError(f"ADC description has format {fmt!r}; expected {ADC_FORMAT!r}")
        known = {"full_scale", "bits", "units", "noise_lsb", "seed"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown ADC keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)

    def __repr__(self) -> str:
        return (f"ADC(full_scale={self.full_scale}, bits={self.bits}, units={self.units!r}, "
                f"noise_lsb={self.noise_lsb}, seed={self.seed})")
