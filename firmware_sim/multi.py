"""Many sensors through one model on one core: batched frames and batched inferences.

A gateway next to a machine hall reads N synchronised sensors (one multi-channel ADC, blocks of all
channels arriving together). :class:`MultiStreamSTFT` keeps every sensor's own sample history and
rolling image in stacked arrays and computes the new frame of all N sensors in one vectorised call
(numpy's per-call overhead, the cost of one sensor's frame, is paid once per N sensors).
:class:`MultiStreamRuntime` feeds it up to each decision point, builds the N images, runs them
through the interpreter in batches (``Interpreter.run_batch``), and gives each sensor's
probabilities to that sensor's own :class:`~firmware_sim.decisions.Decider` (smoothing,
hysteresis, events). Each sensor gets exactly the decisions a single-sensor
:class:`~firmware_sim.runtime.StreamRuntime` gives it (tests/test_multi.py).

Scope: sensors are synchronised (one block of every sensor per step, the same clock). Non-finite
and saturated samples are handled per sensor as in ``StreamRuntime`` (replaced by 0, the
decisions whose window touched them marked invalid); sequence gaps and stalls belong to the
single-sensor runtime, whose sources carry sequence numbers.

Device side: numpy only, no TensorFlow.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from edgecnn.config import SpectrogramConfig
from edgecnn.dsp import _scaled_window, envelope_image, frame_envelope
from edgecnn.errors import ConfigError, InputError
from firmware_sim.decisions import Decider, Decision, DecisionPolicy, Event
from firmware_sim.streaming_stft import HISTORY_HOPS, FrameClock, _rfft_into
from firmware_sim.timing import StreamTiming

#: Sensors per vectorised frame step: bounds scratch memory (this many frames of float64).
SENSORS_PER_STEP = 512


class MultiStreamSTFT(FrameClock):
    """The streaming STFT of N synchronised sensors: each its own history and rolling image."""

    def __init__(self, cfg: SpectrogramConfig, n_sensors: int, *, sample_dtype=np.float32) -> None:
        # Configuration
        if not isinstance(n_sensors, int) or isinstance(n_sensors, bool) or n_sensors < 1:
            raise ConfigError(f"n_sensors={n_sensors!r} must be an integer >= 1")
        self.cfg = cfg
        self.n_sensors = n_sensors
        self._nperseg, self._hop, self._n_frames = cfg.nperseg, cfg.hop, cfg.n_frames
        self._detrend = cfg.detrend == "constant"
        self._window = _scaled_window(cfg)
        self._log = cfg.transform == "log"
        self._floor = 10.0 ** (cfg.log_floor_db / 20.0)
        self._rfft = _rfft_into(cfg.nperseg)
        gain = 20.0 if self._log else 1.0  # as StreamingSTFT: one multiply-add per column
        if cfg.is_normalised:
            std = np.asarray(cfg.norm_std, dtype=np.float64).reshape(-1)
            mean = np.asarray(cfg.norm_mean, dtype=np.float64).reshape(-1)
            self._scale, self._offset = gain / std, mean / std
        else:
            self._scale, self._offset = (np.float64(gain) if self._log else None), None
        # Working variables (allocated once)
        step = min(n_sensors, SENSORS_PER_STEP)
        self._buf = np.zeros((n_sensors, cfg.nperseg + cfg.hop * HISTORY_HOPS), dtype=sample_dtype)
        self._frame = np.zeros((step, cfg.nperseg), dtype=sample_dtype)
        self._windowed = np.zeros((step, cfg.nperseg), dtype=np.float64)
        self._spectrum = np.zeros((step, cfg.n_freq), dtype=np.complex128)
        self._mag = np.zeros((step, cfg.n_freq), dtype=np.float64)
        # Per frame: a feature column, or (envelope feature) the frame's envelope values
        self._envelope = cfg.feature == "envelope"
        self._columns = (np.zeros((n_sensors, cfg.n_frames, cfg.envelope_per_frame), dtype=np.float64)
                         if self._envelope else np.zeros((n_sensors, cfg.n_frames, cfg.n_freq), dtype=np.float32))
        self.reset()

    @property
    def nbytes(self) -> int:
        scratch = self._frame.nbytes + self._windowed.nbytes + self._spectrum.nbytes + self._mag.nbytes
        return self._buf.nbytes + scratch + self._columns.nbytes

    def push(self, blocks: np.ndarray) -> int:
        """Feed one block of every sensor (n_sensors, n); returns how many frames it completed
        (the same for every sensor: they share the clock)."""
        blocks = np.asarray(blocks)
        if blocks.ndim != 2 or blocks.shape[0] != self.n_sensors:
            raise InputError(f"blocks of shape {blocks.shape}: expected ({self.n_sensors}, samples)")
        done = 0
        pos, n = 0, blocks.shape[1]
        while pos < n:
            if self._fill == self._buf.shape[1]:
                self._compact()
            take = min(n - pos, self._buf.shape[1] - self._fill)
            self._buf[:, self._fill:self._fill + take] = blocks[:, pos:pos + take]
            self._fill += take
            self._written += take
            pos += take
            while self._written >= self._next_end:
                self._one_frame(self._next_end - self._nperseg - self._base)
                done += 1
        return done

    def images_into(self, out: np.ndarray, sensors: np.ndarray | None = None) -> None:
        """Every sensor's image (or those of ``sensors``, in that order) in time order into ``out``
        (n, rows, cols)."""
        columns = self._columns if sensors is None else self._columns[sensors]
        if self._envelope:
            out[:] = envelope_image(np.concatenate((columns[:, self._head:], columns[:, :self._head]), axis=1),
                                    self.cfg)
            return
        tail = self._n_frames - self._head
        out[:, :, :tail] = columns[:, self._head:].transpose(0, 2, 1)
        out[:, :, tail:] = columns[:, :self._head].transpose(0, 2, 1)

    def image(self, sensor: int) -> np.ndarray:
        """One sensor's image (rows, cols, 1) float32 (a copy)."""
        ordered = np.concatenate((self._columns[sensor, self._head:], self._columns[sensor, :self._head]))
        image = envelope_image(ordered, self.cfg) if self._envelope else ordered.T
        return np.ascontiguousarray(image)[:, :, None]

    def reset(self, origin: int = 0) -> None:
        self._buf[:] = 0
        self._columns[:] = 0
        self._head = 0
        self.origin = int(origin)
        self.frames = 0
        self._base = self.origin
        self._fill = 0
        self._written = self.origin
        self._next_end = self.origin + self._nperseg

    def _one_frame(self, start: int) -> None:
        """The next frame of every sensor: the arithmetic of ``StreamingSTFT._fast_frames``, with
        sensors as rows, in steps of ``SENSORS_PER_STEP`` sensors."""
        for first in range(0, self.n_sensors, self._frame.shape[0]):
            frames = self._buf[first:first + self._frame.shape[0], start:start + self._nperseg]
            k = frames.shape[0]
            if self._envelope:
                self._columns[first:first + k, self._head] = frame_envelope(frames, self.cfg)
                continue
            windowed, mag = self._windowed[:k], self._mag[:k]
            if self._detrend:
                mean = np.add.reduce(frames, axis=1, keepdims=True)
                np.true_divide(mean, self._nperseg, out=mean, casting="unsafe")
                np.multiply(np.subtract(frames, mean, out=self._frame[:k]), self._window, out=windowed)
            else:
                np.multiply(frames, self._window, out=windowed)
            np.abs(self._rfft(windowed, self._spectrum[:k]), out=mag)
            if self._log:
                np.maximum(mag, self._floor, out=mag)
                np.log10(mag, out=mag)
            if self._scale is not None:
                np.multiply(mag, self._scale, out=mag)
            if self._offset is not None:
                np.subtract(mag, self._offset, out=mag)
            self._columns[first:first + k, self._head] = mag
        self._head = (self._head + 1) % self._n_frames
        self.frames += 1
        self._next_end += self._hop

    def _compact(self) -> None:
        keep = self._next_end - self._nperseg - self._base
        if keep > 0:
            remaining = self._fill - keep
            self._buf[:, :remaining] = self._buf[:, keep:self._fill]
            self._fill = remaining
            self._base += keep


@dataclasses.dataclass
class SensorFaults:
    """Per-sensor sample faults (the multi-sensor runtime's share of ``FaultCounters``)."""

    nonfinite_samples: int = 0
    saturated_samples: int = 0
    faulty_blocks: int = 0
    invalid_decisions: int = 0


class MultiStreamRuntime:
    """N synchronised sensors through one interpreter: ``process(blocks (N, n))`` returns the
    decisions it took as (sensor, Decision) pairs."""

    def __init__(self, cfg: SpectrogramConfig, classes: list[str], interpreter, n_sensors: int, *,
                 policy: DecisionPolicy | None = None, full_scale: float | None = None,
                 max_batch: int | None = None, stagger: bool = False,
                 on_event: Callable[[int, Event], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        # Configuration
        self.cfg = cfg
        self.classes = list(classes)
        self.interpreter = interpreter
        self.policy = policy if policy is not None else DecisionPolicy()
        self.full_scale = full_scale
        self.max_batch = max_batch
        self.on_event = on_event
        self.clock = clock
        # Working variables
        self.stft = MultiStreamSTFT(cfg, n_sensors)
        self.deciders = [Decider(self.classes, cfg.fs, self.policy) for _ in range(n_sensors)]
        self.faults = [SensorFaults() for _ in range(n_sensors)]
        self.events: list[tuple[int, Event]] = []
        self.timing = StreamTiming(cfg.fs)
        self._images = np.zeros((n_sensors, *cfg.input_shape), dtype=np.float32)
        # Staggered decisions: sensor i decides every_frames frames apart from frame n_frames + i %
        # every_frames on (a StreamRuntime with phase=i % every_frames takes the same decisions), so each
        # frame carries about N / every_frames sensors' images and inferences instead of one frame in
        # every_frames carrying all N: the block time's peak, what the deadline sees, falls by that factor.
        every = self.policy.every_frames
        phases = np.arange(n_sensors) % every if stagger else np.zeros(n_sensors, dtype=np.int64)
        self.stagger = bool(stagger)
        self._groups = [np.flatnonzero(phases == g) for g in range(every if stagger else 1)]
        self._fault_end = np.full(n_sensors, -1, dtype=np.int64)
        self._next_decision = cfg.n_frames

    @property
    def n_sensors(self) -> int:
        return self.stft.n_sensors

    def reset(self) -> None:
        self.stft.reset()
        for decider in self.deciders:
            decider.reset()
        self.faults = [SensorFaults() for _ in range(self.n_sensors)]
        self.events = []
        self.timing.reset()
        self._fault_end[:] = -1
        self._next_decision = self.cfg.n_frames

    def run(self, blocks: Iterable[np.ndarray],
            on_decision: Callable[[int, Decision], None] | None = None) -> dict:
        """Process every (N, n) block; returns :meth:`summary`."""
        for block in blocks:
            for sensor, decision in self.process(block):
                if on_decision is not None:
                    on_decision(sensor, decision)
        return self.summary()

    def process(self, blocks: np.ndarray) -> list[tuple[int, Decision]]:
        """One block of every sensor (N, n): returns the (sensor, decision) pairs it completed."""
        start = self.clock()
        samples = np.asarray(blocks, dtype=np.float32)
        if samples.ndim != 2 or samples.shape[0] != self.n_sensors:
            raise InputError(f"blocks of shape {samples.shape}: expected ({self.n_sensors}, samples)")
        bad = self._fault_mask(samples)
        if bad is not None:
            samples = np.where(bad, np.float32(0.0), samples)
        decisions: list[tuple[int, Decision]] = []
        cfg, stft = self.cfg, self.stft
        pos, n = 0, samples.shape[1]
        while pos < n:
            due = stft.origin + (self._next_decision - 1) * cfg.hop + cfg.nperseg
            take = min(n - pos, max(due - stft.samples_seen, 1))
            if bad is not None:
                self._mark_faults(bad[:, pos:pos + take], stft.samples_seen)
            stft.push(samples[:, pos:pos + take])
            pos += take
            if stft.frames >= self._next_decision:
                if not self.stagger:
                    self._decide(decisions, start, None)
                    self._next_decision = stft.frames + self.policy.every_frames
                else:
                    group = self._groups[(stft.frames - cfg.n_frames) % self.policy.every_frames]
                    if group.size:
                        self._decide(decisions, start, group)
                    self._next_decision = stft.frames + 1
        self.timing.record_block(n, self.clock() - start)
        return decisions

    def summary(self) -> dict:
        timing = self.timing.summary()
        rtf = timing["realtime_factor"]
        return {
            "sensors": self.n_sensors,
            "samples_per_sensor": int(self.stft.samples_seen),
            "frames_per_sensor": int(self.stft.frames),
            "decisions": int(sum(d.decisions for d in self.deciders)),
            "invalid_decisions": int(sum(d.invalid for d in self.deciders)),
            "states": [d.state_name for d in self.deciders],
            "events": [{"sensor": s, **e.to_json()} for s, e in self.events],
            "faults": [dataclasses.asdict(f) for f in self.faults],
            "timing": timing,
            # Each block carries N sensors' samples: the sensors one core keeps up with at this load.
            "sensor_realtime_factor": None if rtf is None else round(rtf * self.n_sensors, 1),
        }

    # Internals ---------------------------------------------------------------------------------
    def _fault_mask(self, samples: np.ndarray) -> np.ndarray | None:
        finite = np.isfinite(samples)
        all_finite = bool(finite.all())
        if all_finite and self.full_scale is None:
            return None  # the common case: one pass over the block
        bad = ~finite
        if self.full_scale is not None:
            bad |= finite & (np.abs(np.where(finite, samples, 0)) >= self.full_scale)
        if not bad.any():
            return None
        for sensor in np.flatnonzero(bad.any(axis=1)):
            counts = self.faults[sensor]
            counts.nonfinite_samples += int((~finite[sensor]).sum())
            counts.saturated_samples += int((bad[sensor] & finite[sensor]).sum())
            counts.faulty_blocks += 1
        return bad

    def _mark_faults(self, bad: np.ndarray, base: int) -> None:
        hit = bad.any(axis=1)
        if hit.any():
            last = bad.shape[1] - np.argmax(bad[:, ::-1], axis=1)  # one past the last bad sample
            self._fault_end = np.where(hit, np.maximum(self._fault_end, base + last), self._fault_end)

    def _decide(self, decisions: list[tuple[int, Decision]], start: float, sensors: np.ndarray | None) -> None:
        """Classify the current window of every sensor (or of ``sensors``, a staggered group)."""
        stft = self.stft
        window_start, window_end = stft.window_start, stft.last_frame_end
        k = self.n_sensors if sensors is None else sensors.size
        stft.images_into(self._images[:k, :, :, 0], sensors)
        probabilities = self.interpreter.run_batch(self._images[:k], max_batch=self.max_batch)
        valid = self._fault_end <= window_start
        for row, sensor in enumerate(range(self.n_sensors) if sensors is None else sensors.tolist()):
            decider = self.deciders[sensor]
            ok = bool(valid[sensor])
            decision, event = decider.update(probabilities[row], window_start=window_start,
                                             sample_index=window_end, valid=ok,
                                             reason="" if ok else "window touched a fault")
            if not decision.valid:
                self.faults[sensor].invalid_decisions += 1
            if event is not None:
                self.events.append((sensor, event))
                if self.on_event is not None:
                    self.on_event(sensor, event)
            decisions.append((sensor, decision))
        self.timing.record_decision(0, self.clock() - start)


def rotated_blocks(signal: np.ndarray, n_sensors: int, *, block: int, total: int | None = None
                   ) -> Iterator[np.ndarray]:
    """(n_sensors, block) blocks where sensor i replays ``signal`` circularly from offset
    ``i * len(signal) // n_sensors`` (different machine states at once, one copy of the signal in
    memory); ``total`` samples per sensor (default one pass over the signal)."""
    signal = np.asarray(signal, dtype=np.float32).ravel()
    length = signal.size
    if length == 0:
        raise InputError("rotated_blocks: the signal is empty")
    total = length if total is None else int(total)
    offsets = (np.arange(n_sensors, dtype=np.int64) * length) // n_sensors
    for first in range(0, total, block):
        size = min(block, total - first)
        yield signal[(offsets[:, None] + first + np.arange(size)[None, :]) % length]


def synth_fleet(spec, n_sensors: int, fs: float, *, block: int) -> tuple[list, Iterator[np.ndarray]]:
    """A fleet of N synthetic machines, each its own: sensor i is the machine of seed ``spec.seed + i``.

    Without an onset in ``spec`` every machine stays as the spec says (healthy, or faulty
    throughout with ``faulty=1``). With ``onset=T`` the even sensors develop a fault at their own
    onset, drawn (seeded by ``spec.seed``) uniformly in [T/2, 3T/2] and kept inside the stream, and
    the odd sensors stay healthy. Returns the per-sensor specs and the (N, block) blocks, rendered
    machine by machine one segment at a time (memory: N segments).
    """
    from firmware_sim.sources import SynthSource

    rng = np.random.default_rng(spec.seed)
    specs = []
    for i in range(n_sensors):
        onset = None
        if spec.onset is not None and i % 2 == 0:
            onset = float(min(rng.uniform(0.5, 1.5) * spec.onset, 0.95 * spec.duration))
        specs.append(dataclasses.replace(spec, seed=spec.seed + i, onset=onset))
    sources = [SynthSource(s, fs, block=block).blocks() for s in specs]

    def blocks() -> Iterator[np.ndarray]:
        for row in zip(*sources):
            yield np.stack([b.samples for b in row])

    return specs, blocks()
