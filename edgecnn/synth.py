"""The built-in synthetic vibration generator: the default data of the demo and the tests.

Physically motivated, vectorised, deterministic for a seed. Each *recording* is one machine state
(shaft speed, gain, structural resonance, noise level, and for class B a bearing defect); its
windows share those parameters with small per-window jitter, so splits by recording are honest.

Every window is: shaft harmonics (1x..5x with random phases) + broadband noise + the structural
resonance excited by that noise; class B adds an impulse train at the defect frequency
(``defect_order`` x shaft, with slip jitter between impacts) that rings the resonance. Its
severity (impact amplitude against the noise) is log-uniform and reaches down into the noise,
so some B windows are nearly indistinguishable from A: ``difficulty`` scales that range.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np

from edgecnn.errors import ConfigError

FS = 12800.0
WINDOW = 10000
#: Impulse-response length of the structural resonance (samples); long enough for its decay.
RING_SAMPLES = 1024


@dataclasses.dataclass(frozen=True, kw_only=True)
class SynthSpec:
    """Parameters of the synthetic data set (defaults: the calibrated demo difficulty)."""

    n: int = 2000
    """Number of windows."""
    seed: int = 0
    """Seed of every random draw: the same spec gives the same bytes."""
    n_recordings: int | None = None
    """Recordings (machine states) the windows come from; default n // 25, at least 4."""
    difficulty: float = 1.0
    """Scales how far the defect severity reaches into the noise (1 = calibrated default)."""
    fs: float = FS
    """Sample rate in Hz."""
    window_samples: int = WINDOW
    """Samples per window."""

    def __post_init__(self) -> None:
        if not isinstance(self.n, int) or self.n < 2:
            raise ConfigError(f"synth: n={self.n!r} must be an integer >= 2 windows")
        if self.n_recordings is not None and not 2 <= self.n_recordings <= self.n:
            raise ConfigError(f"synth: n_recordings={self.n_recordings!r} must be in [2, n={self.n}]")
        if not 0.0 < self.difficulty <= 10.0:
            raise ConfigError(f"synth: difficulty={self.difficulty!r} must be in (0, 10]")
        if self.fs <= 0 or self.window_samples < 256:
            raise ConfigError("synth: fs must be > 0 and window_samples >= 256")

    @property
    def recordings(self) -> int:
        return self.n_recordings or max(4, min(self.n, self.n // 25))


def draw_machines(n: int, rng: np.random.Generator, *, faulty: np.ndarray, difficulty: float) -> dict:
    """Per-recording machine parameters (arrays of length n)."""
    # Severity: impact peak over noise RMS, log-uniform; difficulty widens it down into the noise.
    sev_hi = 3.0
    sev_lo = sev_hi * 10.0 ** (-0.6 * difficulty)
    return {
        "shaft_hz": rng.uniform(10.0, 40.0, n),
        "gain": np.exp(rng.uniform(np.log(0.4), np.log(2.5), n)),
        "harmonic_level": rng.uniform(0.3, 1.5, n),
        "noise": np.exp(rng.uniform(np.log(0.5), np.log(1.0), n)),
        "resonance_hz": rng.uniform(1800.0, 4800.0, n),
        "damping": rng.uniform(0.03, 0.08, n),
        "resonance_level": rng.uniform(0.5, 1.5, n),
        "defect_order": rng.uniform(3.0, 5.5, n),
        "severity": np.where(faulty, np.exp(rng.uniform(np.log(sev_lo), np.log(sev_hi), n)), 0.0),
        "faulty": faulty.astype(bool),
    }


def render(params: dict, length: int, fs: float, rng: np.random.Generator, *,
           t0: np.ndarray | None = None, fault_gate: np.ndarray | None = None) -> np.ndarray:
    """Render rows of vibration (rows x length, float64) from per-row machine parameters.

    ``t0`` gives each row's start time (continuity of harmonics); ``fault_gate`` (length samples,
    0/1) switches the defect impacts on and off along time (a fault onset in a stream).
    """
    rows = len(params["shaft_hz"])
    t0 = np.zeros(rows) if t0 is None else np.asarray(t0, dtype=float)
    t = np.arange(length) / fs
    col = lambda key: np.asarray(params[key], dtype=float)[:, None]  # noqa: E731

    shaft = col("shaft_hz") * (1.0 + rng.normal(0.0, 0.003, (rows, 1)))
    harmonics = np.zeros((rows, length))
    for order, amp in zip(range(1, 6), (1.0, 0.5, 0.3, 0.2, 0.1)):
        phase = rng.uniform(0.0, 2.0 * np.pi, (rows, 1))
        harmonics += amp * np.sin(2.0 * np.pi * order * shaft * (t[None, :] + t0[:, None]) + phase)
    noise_level = col("noise")
    broadband = rng.normal(0.0, 1.0, (rows, length)) * noise_level

    # Resonance impulse response per row: a damped sinusoid, unit peak.
    tau = np.arange(RING_SAMPLES) / fs
    wn = 2.0 * np.pi * col("resonance_hz")
    zeta = col("damping")
    ring = np.exp(-zeta * wn * tau[None, :]) * np.sin(wn * np.sqrt(1.0 - zeta**2) * tau[None, :])

    # Defect impacts: cumulative intervals with slip jitter, random first impact, +-20 % amplitude.
    defect_hz = col("defect_order")[:, 0] * shaft[:, 0]
    period = fs / defect_hz
    max_hits = int(np.ceil(length / period.min())) + 2
    intervals = period[:, None] * (1.0 + rng.normal(0.0, 0.015, (rows, max_hits)))
    starts = rng.uniform(0.0, 1.0, rows) * period
    hit_pos = np.round(starts[:, None] + np.cumsum(intervals, axis=1) - intervals[:, :1]).astype(np.int64)
    hit_amp = rng.uniform(0.8, 1.2, (rows, max_hits)) * col("severity")
    valid = (hit_pos >= 0) & (hit_pos < length)
    impacts = np.zeros((rows, length))
    row_idx = np.broadcast_to(np.arange(rows)[:, None], hit_pos.shape)
    impacts[row_idx[valid], hit_pos[valid]] = hit_amp[valid]
    if fault_gate is not None:
        impacts *= np.asarray(fault_gate, dtype=float)[None, :length]

    # Both the background resonance (excited by broadband noise) and the impacts ring through the
    # same structure: one FFT convolution of (noise share + impacts) with the ring.
    excitation = 0.05 * col("resonance_level") * broadband + impacts * noise_level * 4.0
    n_fft = length + RING_SAMPLES
    rung = np.fft.irfft(np.fft.rfft(excitation, n_fft, axis=1) * np.fft.rfft(ring, n_fft, axis=1),
                        n_fft, axis=1)[:, :length]
    signal = col("harmonic_level") * harmonics + broadband + rung
    return signal * col("gain")


def generate(spec: SynthSpec | None = None, **overrides) -> dict:
    """A synthetic data set in the reference pickle format, plus recording ids.

    Returns a dict: ``time`` (N x L, s), ``signal`` (N x L, float32), ``label`` (N x 2 one-hot,
    column 0 = class A healthy, column 1 = class B faulty), ``recording`` (N,) int ids, ``fs``,
    ``classes`` and ``machines`` (the per-recording parameters, for inspection).
    """
    spec = dataclasses.replace(spec, **overrides) if spec else SynthSpec(**overrides)
    rng = np.random.default_rng(spec.seed)
    n_rec = spec.recordings
    faulty = np.arange(n_rec) % 2 == 1
    rng.shuffle(faulty)
    machines = draw_machines(n_rec, rng, faulty=faulty, difficulty=spec.difficulty)
    recording = np.sort(np.arange(spec.n) % n_rec)
    signal = np.empty((spec.n, spec.window_samples), dtype=np.float32)
    chunk = 200
    for start in range(0, spec.n, chunk):
        rows = recording[start:start + chunk]
        params = {k: v[rows] for k, v in machines.items()}
        t0 = rng.uniform(0.0, 3600.0, len(rows))
        signal[start:start + chunk] = render(params, spec.window_samples, spec.fs, rng, t0=t0)
    label = np.zeros((spec.n, 2), dtype=np.float32)
    label[np.arange(spec.n), machines["faulty"][recording].astype(int)] = 1.0
    time = np.broadcast_to((np.arange(spec.window_samples) / spec.fs).astype(np.float32),
                           signal.shape).copy()
    return {
        "time": time,
        "signal": signal,
        "label": label,
        "recording": recording.astype(np.int64),
        "fs": float(spec.fs),
        "classes": ["A", "B"],
        "machines": {k: np.asarray(v) for k, v in machines.items()},
    }


def render_stream(duration_s: float, *, seed: int = 0, fs: float = FS, fault_onset_s: float | None = None,
                  faulty: bool = False, difficulty: float = 1.0, severity: float | None = None) -> np.ndarray:
    """One continuous recording of one machine (float32), optionally developing a fault at a time.

    With ``fault_onset_s`` the machine is healthy before and faulty from then on (the defect's
    impacts switch on); ``faulty`` makes it faulty throughout. ``severity`` fixes the impact level.
    """
    if duration_s <= 0:
        raise ConfigError(f"synth stream: duration_s={duration_s!r} must be > 0")
    rng = np.random.default_rng(seed)
    has_fault = faulty or fault_onset_s is not None
    machine = draw_machines(1, rng, faulty=np.array([has_fault]), difficulty=difficulty)
    if severity is not None and has_fault:
        machine["severity"] = np.array([float(severity)])
    length = int(round(duration_s * fs))
    gate = None
    if fault_onset_s is not None and not faulty:
        gate = (np.arange(length) >= int(round(fault_onset_s * fs))).astype(float)
    return render(machine, length, fs, rng, fault_gate=gate)[0].astype(np.float32)


def write_pickle(path: str | Path, data: dict) -> Path:
    """Write a data set in the reference pickle format atomically (temp file, then rename)."""
    from edgecnn.fileio import atomic_open

    with atomic_open(path) as fh:
        pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return Path(path)
