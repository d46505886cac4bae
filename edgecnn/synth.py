"""The built-in synthetic vibration generator: the default data of the demo and the tests.

Physically motivated, vectorised, deterministic for a seed. Recordings come from *machines*
(:func:`draw_machines`), and each machine differs from the others the way real ones do: its own
shaft speed range, two structural resonances (frequency, damping, share), a transfer path from the
structure to the sensor (a random short FIR filter), sensor gain, noise floor, harmonic level and
bearing geometry (the defect order). A machine has two recordings by default, one healthy and one
with a bearing defect (:func:`draw_recordings`: shaft speed drawn from the machine's range, a
severity for the faulty one). A recording's windows share its parameters with small per-window
jitter. The data carry a machine id per window, and ``edgecnn train`` splits synthetic data by
machine, so its accuracy is that on machines the model never saw.

Every window is: shaft harmonics (1x..5x with random phases) + broadband sensor noise + the
structure's response (resonances and transfer path) excited by a share of that noise; class B adds
an impulse train at the defect frequency (``defect_order`` x shaft, with slip jitter between
impacts) that rings the structure. Its severity (impact amplitude against the noise) is
log-uniform and reaches down into the noise, so some B windows are nearly indistinguishable from
A: ``difficulty`` scales that range.

Streams (:class:`MachineStream`, :func:`render_stream`): one machine's continuous recording with
the same physics, rendered in segments whose concatenation is one signal (absolute-time harmonics,
impacts and fault gate; the ring's tail carried across borders), so a live synthetic sensor of any
duration holds a few seconds of signal, never the whole stream. Numpy only (the device side
imports this module): never import scipy or TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgecnn.errors import ConfigError

FS = 12800.0
WINDOW = 10000
#: Impulse-response length of the structural resonance (samples); long enough for its decay.
RING_SAMPLES = 1024
#: Amplitudes of the shaft harmonics 1x..5x.
HARMONIC_AMPS = (1.0, 0.5, 0.3, 0.2, 0.1)
#: Taps of a machine's transfer path (structure to sensor): 1 followed by random taps.
PATH_TAPS = 4


@dataclasses.dataclass(frozen=True, kw_only=True)
class SynthSpec:
    """Parameters of the synthetic data set (defaults: the calibrated demo difficulty)."""

    n: int = 2000
    """Number of windows."""
    seed: int = 0
    """Seed of every random draw: the same spec gives the same bytes."""
    n_recordings: int | None = None
    """Recordings (machine states) the windows come from; default n // 25, at least 4."""
    n_machines: int | None = None
    """Machines the recordings come from; default half the recordings (one healthy and one faulty
    recording each), at least 2."""
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
        if self.n_machines is not None and not 1 <= self.n_machines <= self.recordings:
            raise ConfigError(f"synth: n_machines={self.n_machines!r} must be in [1, recordings="
                              f"{self.recordings}]")
        if not 0.0 < self.difficulty <= 10.0:
            raise ConfigError(f"synth: difficulty={self.difficulty!r} must be in (0, 10]")
        if self.fs <= 0 or self.window_samples < 256:
            raise ConfigError("synth: fs must be > 0 and window_samples >= 256")

    @property
    def recordings(self) -> int:
        return self.n_recordings or max(4, min(self.n, self.n // 25))

    @property
    def machines(self) -> int:
        return self.n_machines or max(2, self.recordings // 2)


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), n))


def draw_machines(n: int, rng: np.random.Generator) -> dict:
    """Parameters of ``n`` machines (arrays of length n; ``path`` is n x PATH_TAPS)."""
    centre = rng.uniform(12.0, 38.0, n)
    spread = rng.uniform(0.05, 0.2, n)
    path = np.concatenate([np.ones((n, 1)), rng.normal(0.0, 0.15, (n, PATH_TAPS - 1))], axis=1)
    return {
        "shaft_lo_hz": centre * (1.0 - spread),
        "shaft_hi_hz": centre * (1.0 + spread),
        "gain": _log_uniform(rng, 0.4, 2.5, n),
        "harmonic_level": rng.uniform(0.3, 1.5, n),
        "noise": _log_uniform(rng, 0.5, 1.0, n),
        "resonance_hz": rng.uniform(1800.0, 4800.0, n),
        "damping": rng.uniform(0.03, 0.08, n),
        "resonance2_hz": rng.uniform(900.0, 6000.0, n),
        "damping2": rng.uniform(0.02, 0.1, n),
        "resonance2_share": rng.uniform(0.05, 0.25, n),
        "resonance_level": rng.uniform(0.5, 1.5, n),
        "path": path,
        "defect_order": rng.uniform(3.0, 5.5, n),
    }


def draw_recordings(machines: dict, machine: np.ndarray, rng: np.random.Generator, *, faulty: np.ndarray,
                    difficulty: float) -> dict:
    """Per-recording parameters (arrays of length len(machine)): the machine's, with this recording's
    shaft speed (from the machine's range), harmonic level (load) and defect severity."""
    machine = np.asarray(machine, dtype=np.int64)
    n = machine.size
    out = {k: np.asarray(v)[machine] for k, v in machines.items() if not k.startswith("shaft_")}
    # Severity: impact peak over noise RMS, log-uniform; difficulty widens it down into the noise.
    sev_hi = 3.0
    sev_lo = sev_hi * 10.0 ** (-0.5 * difficulty)
    lo, hi = machines["shaft_lo_hz"][machine], machines["shaft_hi_hz"][machine]
    out.update({
        "machine": machine,
        "shaft_hz": lo + rng.uniform(0.0, 1.0, n) * (hi - lo),
        "harmonic_level": out["harmonic_level"] * _log_uniform(rng, 0.8, 1.25, n),
        "severity": np.where(faulty, _log_uniform(rng, sev_lo, sev_hi, n), 0.0),
        "faulty": np.asarray(faulty, dtype=bool),
    })
    return out


def ring_response(resonance_hz, damping, fs: float) -> np.ndarray:
    """A damped sinusoid (RING_SAMPLES long), unit peak.

    Scalars give one response; (rows, 1) columns give one row each.
    """
    tau = np.arange(RING_SAMPLES) / fs
    wn = 2.0 * np.pi * np.asarray(resonance_hz, dtype=float)
    zeta = np.asarray(damping, dtype=float)
    return np.exp(-zeta * wn * tau) * np.sin(wn * np.sqrt(1.0 - zeta**2) * tau)


def structure_response(params: dict, fs: float) -> np.ndarray:
    """The machine's impulse response at the sensor (rows x RING_SAMPLES), unit peak per row:
    two resonances, then the transfer path (a short FIR filter)."""
    col = lambda key: np.asarray(params[key], dtype=float).reshape(-1, 1)  # noqa: E731
    share = col("resonance2_share")
    ring = ((1.0 - share) * ring_response(col("resonance_hz"), col("damping"), fs)
            + share * ring_response(col("resonance2_hz"), col("damping2"), fs))
    path = np.asarray(params["path"], dtype=float).reshape(ring.shape[0], -1)
    out = np.zeros_like(ring)
    for lag in range(path.shape[1]):
        out[:, lag:] += path[:, lag:lag + 1] * ring[:, :RING_SAMPLES - lag]
    return out / np.abs(out).max(axis=1, keepdims=True)


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
    for order, amp in enumerate(HARMONIC_AMPS, 1):
        phase = rng.uniform(0.0, 2.0 * np.pi, (rows, 1))
        harmonics += amp * np.sin(2.0 * np.pi * order * shaft * (t[None, :] + t0[:, None]) + phase)
    noise_level = col("noise")
    broadband = rng.normal(0.0, 1.0, (rows, length)) * noise_level

    ring = structure_response(params, fs)

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
    """A synthetic data set in the reference pickle format, plus recording and machine ids.

    Returns a dict: ``time`` (N x L, s), ``signal`` (N x L, float32), ``label`` (N x 2 one-hot,
    column 0 = class A healthy, column 1 = class B faulty), ``recording`` (N,) int ids, ``machine``
    (N,) int ids, ``fs``, ``classes`` and ``machines`` (the per-recording parameters, with each
    recording's ``machine``, for inspection).

    Recording r belongs to machine r % n_machines; a machine's recordings alternate between healthy
    and faulty, starting with either at random, so with the default two recordings per machine
    every machine has one of each.
    """
    spec = dataclasses.replace(spec, **overrides) if spec else SynthSpec(**overrides)
    rng = np.random.default_rng(spec.seed)
    n_rec, n_mach = spec.recordings, spec.machines
    machine_of = np.arange(n_rec) % n_mach
    first_faulty = rng.uniform(0.0, 1.0, n_mach) < 0.5
    faulty = ((np.arange(n_rec) // n_mach) % 2 == 1) ^ first_faulty[machine_of]
    machines = draw_recordings(draw_machines(n_mach, rng), machine_of, rng, faulty=faulty,
                               difficulty=spec.difficulty)
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
        "machine": machine_of[recording].astype(np.int64),
        "fs": float(spec.fs),
        "classes": ["A", "B"],
        "machines": {k: np.asarray(v) for k, v in machines.items()},
    }


class MachineStream:
    """One machine's continuous recording, rendered segment by segment (flat memory, any length).

    The concatenated segments are ONE physical signal, whatever the segment length: the shaft
    harmonics have fixed phases per machine and are evaluated at absolute time; the defect impacts
    are placed along absolute time (each interval with its slip jitter follows the previous
    impact, across segment borders); the structural resonance's ring is convolved per internal
    chunk and its tail is added to the next chunk (overlap-add); the fault gate is an absolute
    sample index. The noise, the impact jitter and the impact amplitudes come from their own
    random streams drawn in order, so the signal does not depend on how it is cut.

    With ``fault_onset_s`` the machine is healthy before and faulty from then on (the defect's
    impacts switch on); ``faulty`` makes it faulty throughout. ``severity`` fixes the impact level.
    The machine and the recording are drawn like the training data's (:func:`draw_machines`,
    :func:`draw_recordings`).
    """

    #: Samples rendered per internal step: with the ring, one FFT of 16384 points per step.
    CHUNK = 16384 - RING_SAMPLES
    #: Impacts drawn per batch (a fixed size, so the draws do not depend on the segmentation).
    HIT_BATCH = 64

    def __init__(self, duration_s: float, *, seed: int = 0, fs: float = FS, fault_onset_s: float | None = None,
                 faulty: bool = False, difficulty: float = 1.0, severity: float | None = None):
        if not duration_s > 0:
            raise ConfigError(f"synth stream: duration_s={duration_s!r} must be > 0")
        if not fs > 0:
            raise ConfigError(f"synth stream: fs={fs!r} must be > 0 Hz")
        self.fs = float(fs)
        self.seed = int(seed)
        self.n_samples = int(round(duration_s * fs))
        rng = np.random.default_rng(seed)
        has_fault = faulty or fault_onset_s is not None
        machine = draw_recordings(draw_machines(1, rng), np.zeros(1, np.int64), rng, faulty=np.array([has_fault]),
                                  difficulty=difficulty)
        if severity is not None and has_fault:
            machine["severity"] = np.array([float(severity)])
        self.machine = {k: v[0] for k, v in machine.items()}
        #: First faulty sample (absolute index); None: no onset (healthy throughout or faulty throughout).
        self.onset_sample = None if faulty or fault_onset_s is None else int(round(fault_onset_s * fs))
        m = self.machine
        self.shaft_hz = float(m["shaft_hz"]) * (1.0 + rng.normal(0.0, 0.003))
        self.phases = rng.uniform(0.0, 2.0 * np.pi, 5)
        self.period = self.fs / (float(m["defect_order"]) * self.shaft_hz)  # samples between impacts
        self.first_hit = float(rng.uniform(0.0, 1.0)) * self.period
        self.ring = structure_response(machine, self.fs)[0]
        self._n_fft = self.CHUNK + RING_SAMPLES
        self._ring_f = np.fft.rfft(self.ring, self._n_fft)

    def __len__(self) -> int:
        return self.n_samples

    def segments(self, seconds: float = 1.0) -> Iterator[np.ndarray]:
        """The whole stream as consecutive float32 arrays of ``seconds`` (the last may be shorter).

        Every call starts again from the first sample and yields the same signal.
        """
        size = int(round(seconds * self.fs))
        if size < 1:
            raise ConfigError(f"synth stream: segments of {seconds!r} s hold no sample at {self.fs:g} Hz")
        pending: list[np.ndarray] = []
        held = 0
        for chunk in self._chunks():
            pending.append(chunk)
            held += chunk.size
            if held < size:
                continue
            joined = np.concatenate(pending) if len(pending) > 1 else pending[0]
            n_full = joined.size // size * size
            for start in range(0, n_full, size):
                yield joined[start:start + size]
            rest = joined[n_full:]
            pending, held = ([rest] if rest.size else []), rest.size
        if held:
            yield np.concatenate(pending)

    def _chunks(self) -> Iterator[np.ndarray]:
        """Internal steps of CHUNK samples (float32), rendered with the state carried between them."""
        m, fs = self.machine, self.fs
        noise_rng = np.random.default_rng([self.seed, 1])
        hits = _ImpactTrain(self, np.random.default_rng([self.seed, 2]), np.random.default_rng([self.seed, 3]))
        carry = np.zeros(RING_SAMPLES - 1)
        for start in range(0, self.n_samples, self.CHUNK):
            n = min(self.CHUNK, self.n_samples - start)
            t = np.arange(start, start + n) / fs  # absolute time: no phase jump at any border
            harmonics = np.zeros(n)
            for order, (amp, phase) in enumerate(zip(HARMONIC_AMPS, self.phases), 1):
                harmonics += amp * np.sin(2.0 * np.pi * order * self.shaft_hz * t + phase)
            broadband = noise_rng.normal(0.0, 1.0, n) * m["noise"]
            excitation = 0.05 * m["resonance_level"] * broadband
            pos, amp = hits.take(start, start + n)
            np.add.at(excitation, pos - start, amp * m["noise"] * 4.0)
            # Overlap-add: the ring of this chunk's excitation lasts RING_SAMPLES - 1 past its end.
            rung = np.fft.irfft(np.fft.rfft(excitation, self._n_fft) * self._ring_f, self._n_fft)
            rung = rung[:n + RING_SAMPLES - 1]
            rung[:RING_SAMPLES - 1] += carry
            carry = rung[n:].copy()
            signal = m["harmonic_level"] * harmonics + broadband + rung[:n]
            yield (signal * m["gain"]).astype(np.float32)


class _ImpactTrain:
    """The defect's impacts along absolute sample positions, generated as time advances."""

    def __init__(self, stream: MachineStream, jitter_rng: np.random.Generator, amp_rng: np.random.Generator):
        self.stream = stream
        self.jitter_rng, self.amp_rng = jitter_rng, amp_rng
        self.next_hit = stream.first_hit  # float position of the next impact not yet drawn
        self.pos = np.zeros(0, dtype=np.int64)
        self.amp = np.zeros(0)
        self.active = float(stream.machine["severity"]) > 0

    def take(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """Positions (absolute) and amplitudes of the impacts in samples [start, stop), gated."""
        if not self.active:
            return self.pos, self.amp
        s = self.stream
        while self.next_hit < stop:
            # Cumulative intervals with slip jitter; +-20 % amplitude around the severity.
            intervals = s.period * (1.0 + self.jitter_rng.normal(0.0, 0.015, s.HIT_BATCH))
            at = self.next_hit + np.concatenate(([0.0], np.cumsum(intervals[:-1])))
            self.next_hit = float(at[-1] + intervals[-1])
            self.pos = np.concatenate((self.pos, np.round(at).astype(np.int64)))
            amp = self.amp_rng.uniform(0.8, 1.2, s.HIT_BATCH) * float(s.machine["severity"])
            self.amp = np.concatenate((self.amp, amp))
        now = self.pos < stop
        pos, amp = self.pos[now], self.amp[now]
        self.pos, self.amp = self.pos[~now], self.amp[~now]
        keep = pos >= start if s.onset_sample is None else pos >= max(start, s.onset_sample)
        return pos[keep], amp[keep]


def render_stream(duration_s: float, *, seed: int = 0, fs: float = FS, fault_onset_s: float | None = None,
                  faulty: bool = False, difficulty: float = 1.0, severity: float | None = None) -> np.ndarray:
    """One continuous recording of one machine (float32): all of :class:`MachineStream`'s segments.

    With ``fault_onset_s`` the machine is healthy before and faulty from then on (the defect's
    impacts switch on); ``faulty`` makes it faulty throughout. ``severity`` fixes the impact level.
    """
    stream = MachineStream(duration_s, seed=seed, fs=fs, fault_onset_s=fault_onset_s, faulty=faulty,
                           difficulty=difficulty, severity=severity)
    out = np.empty(len(stream), dtype=np.float32)
    start = 0
    for segment in stream.segments(MachineStream.CHUNK / stream.fs):
        out[start:start + segment.size] = segment
        start += segment.size
    return out


def write_pickle(path: str | Path, data: dict) -> Path:
    """Write a data set in the reference pickle format atomically (temp file, then rename)."""
    from edgecnn.fileio import atomic_open

    with atomic_open(path) as fh:
        pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return Path(path)
