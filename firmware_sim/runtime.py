"""The device loop: source -> ring buffer -> streaming STFT -> interpreter -> decisions -> events.

:class:`StreamRuntime` owns the pipeline's working state (allocated once) and processes one block
at a time: ``process(block)`` checks the sequence number, counts and neutralises faults, feeds the
STFT up to each decision point (so a decision sees exactly the image of its window, whatever the
block size), classifies, smooths, raises events, and times the block against its period.

Faults never crash the loop. Non-finite samples are counted and replaced by 0; samples at the
source's full scale are counted as saturated; with an ``adc`` (the device's converter, e.g. from
the bundle's ``device`` section) every sample is quantised to int16 counts on arrival, the STFT's
ring holds counts (the DSP backend gets them, as on the device) and samples the converter clipped
count as saturated (kept at the rail, not zeroed: that is what the device's buffer holds); a
repeated (or late) block is counted and skipped; a sequence gap is counted and its missing samples
are filled with zeros (a gap longer than one window restarts the STFT at the new position instead).
Every decision whose window touched a faulty or filled sample is marked invalid and raises no
event; valid decisions return as soon as a window lies entirely after the fault.

One runtime serves one sensor or a fleet of N synchronised sensors (``n_sensors``; blocks of
(N, n) samples sharing one clock and one sequence): every sensor has its own image, decider and
fault counters, the images of the sensors deciding at a frame go through the interpreter as one
batch, and ``stagger`` spreads the sensors' decisions over the cadence. A lone sensor is N = 1.

Device side: no TensorFlow. The interpreter is anything with ``run(image) -> probabilities`` (and
``run_batch(images, max_batch)`` for a fleet).
Processing time is measured with ``clock`` (``time.perf_counter`` unless a test passes one in);
the stream clock is the sample count.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable

import numpy as np

from edgecnn.config import SpectrogramConfig
from edgecnn.dsp import frame_magnitudes
from edgecnn.errors import InputError
from firmware_sim.adc import ADC
from firmware_sim.decisions import Decider, Decision, DecisionPolicy, Event
from firmware_sim.sources import Block
from firmware_sim.streaming_stft import MagnitudeFn, StreamingSTFT
from firmware_sim.timing import StreamTiming

#: A block arriving later than this many periods of the previous block after it is a stall.
STALL_PERIODS = 2.0


@dataclasses.dataclass
class FaultCounters:
    """What went wrong in the stream, and how many decisions it cost."""

    nonfinite_samples: int = 0
    saturated_samples: int = 0
    faulty_blocks: int = 0
    dropped_blocks: int = 0
    repeated_blocks: int = 0
    gaps: int = 0
    filled_samples: int = 0
    restarts: int = 0
    stalls: int = 0
    longest_stall_s: float = 0.0
    invalid_decisions: int = 0

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


class StreamRuntime:
    """One sensor, or N synchronised sensors, through one model: ``process(block)`` returns the
    decisions it took (a fleet's decisions and events carry their ``sensor``)."""

    def __init__(self, cfg: SpectrogramConfig, classes: list[str], interpreter, *, n_sensors: int = 1,
                 policy: DecisionPolicy | None = None, magnitude_fn: MagnitudeFn = frame_magnitudes,
                 full_scale: float | None = None, on_event: Callable[[Event], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter, adc: ADC | None = None,
                 on_recording: Callable[[str, int], None] | None = None, phase: int = 0,
                 stagger: bool = False, max_batch: int | None = None) -> None:
        # Configuration
        self.cfg = cfg
        self.classes = list(classes)
        self.interpreter = interpreter
        self.policy = policy if policy is not None else DecisionPolicy()
        self.full_scale = full_scale
        self.on_event = on_event
        self.on_recording = on_recording
        self.clock = clock
        self.max_batch = max_batch
        #: Frames after the first full image before the first decision (0 for a lone sensor).
        self.phase = int(phase)
        self.adc = adc
        # Working variables
        self.stft = StreamingSTFT(cfg, n_sensors=n_sensors, magnitude_fn=magnitude_fn,
                                  sample_dtype=np.int16 if adc is not None else np.float32)
        n = self.stft.n_sensors
        self._hop, self._nperseg = cfg.hop, cfg.nperseg  # read once per block: plain attributes
        self.deciders = [Decider(self.classes, cfg.fs, self.policy, sensor=i if n > 1 else None) for i in range(n)]
        self.timing = StreamTiming(cfg.fs)
        self._images = np.zeros((n, *cfg.input_shape), dtype=np.float32)
        # Staggered decisions: sensor i decides from frame n_frames + phase + i % every_frames on, every
        # every_frames frames (a lone runtime with that phase takes the same decisions), so each frame
        # carries about N / every_frames sensors' images and inferences instead of one frame in every
        # every_frames carrying all N: the block time's peak, what the deadline sees, falls by that factor.
        every = self.policy.every_frames
        self.stagger = bool(stagger) and n > 1
        groups = min(n, every) if self.stagger else 1
        self._groups = [None] if groups == 1 else [np.arange(g, n, every) for g in range(groups)]
        self._max_pending = None if n == 1 else 1  # a fleet computes frames as they complete (see _feed)
        self.reset()

    @property
    def n_sensors(self) -> int:
        return self.stft.n_sensors

    @property
    def decider(self) -> Decider:
        """Sensor 0's decider (a lone sensor's)."""
        return self.deciders[0]

    @property
    def faults(self) -> FaultCounters:
        """Sensor 0's fault counters (a lone sensor's); ``sensor_faults`` has every sensor's."""
        return self.sensor_faults[0]

    def reset(self) -> None:
        if self.adc is not None:
            self.adc.reset()
        self.stft.reset()
        for decider in self.deciders:
            decider.reset()
        self.timing.reset()
        self.sensor_faults = [FaultCounters() for _ in range(self.n_sensors)]
        self.events: list[Event] = []
        self._next_seq: int | None = None
        self._next_t = 0
        self._last_arrival: float | None = None
        self._last_period = 0.0
        self._fault_end = np.full(self.n_sensors, -1, dtype=np.int64)  # one past the newest faulty sample
        self._restart_decisions()
        self.recording: str | None = None
        self._recording_start = 0
        self._recording_events = 0
        self.recordings: list[dict] = []  # summaries of the recordings already ended

    # The loop --------------------------------------------------------------------------------
    def run(self, blocks: Iterable[Block], on_decision: Callable[[Decision], None] | None = None, *,
            watch_stalls: bool = False) -> dict:
        """Process every block; returns :meth:`summary`. With ``watch_stalls`` (a live or paced
        source) each block's arrival time is taken from ``clock`` to detect a stalled source."""
        for block in blocks:
            arrived = self.clock() if watch_stalls else None
            for decision in self.process(block, arrived=arrived):
                if on_decision is not None:
                    on_decision(decision)
        return self.summary()

    def process(self, block: Block, *, arrived: float | None = None) -> list[Decision]:
        """One block ((n,) samples, or (N, n) for N sensors): returns the decisions it completed.
        ``arrived`` (clock seconds) checks for a stall: a block later than ``STALL_PERIODS``
        periods of the previous one after it."""
        start = self.clock()
        samples = np.asarray(block.samples, dtype=np.float32)
        if self.n_sensors == 1:  # a lone sensor's samples stay 1-D (n,): fewer numpy calls per block
            if samples.ndim != 1:
                samples = samples.reshape(-1)
        elif samples.ndim != 2 or samples.shape[0] != self.n_sensors:
            raise InputError(f"blocks of shape {samples.shape}: expected ({self.n_sensors}, samples)")
        n = samples.shape[-1]
        if arrived is not None:
            self._check_stall(arrived, n)
        decisions: list[Decision] = []
        if block.recording is not None and block.recording != self.recording:
            self._start_recording(block.recording, block.t_sample_index)
        if not self._accept_sequence(block, n, start, decisions):
            self.timing.record_block(n, self.clock() - start)
            return decisions
        bad = self._fault_mask(samples)
        if bad is not None:
            samples = np.where(bad, np.float32(0.0), samples)
        if self.adc is not None:
            samples, bad = self._convert(samples, bad)
        self._feed(samples, bad, block.t_sample_index + n, start, decisions)
        self._next_seq = block.seq + 1
        self._next_t = block.t_sample_index + n
        self.timing.record_block(n, self.clock() - start)
        return decisions

    def summary(self) -> dict:
        """Figures of the whole stream. A lone sensor's: its decisions, states and faults (with
        recordings, a replayed folder, ``recordings`` holds each one's; the decider restarts at
        each recording). A fleet's: ``states`` and ``faults`` per sensor, and the sensor-seconds
        one core keeps up with (``sensor_realtime_factor``)."""
        timing = self.timing.summary()
        out = {
            "samples": int(self.stft.samples_seen),
            "frames": int(self.stft.frames),
            "decisions": int(self.total_decisions),
            "invalid_decisions": int(sum(f.invalid_decisions for f in self.sensor_faults)),
        }
        if self.n_sensors > 1:
            rtf = timing["realtime_factor"]
            return {"sensors": self.n_sensors, **out,
                    "states": [d.state_name for d in self.deciders],
                    "events": [e.to_json() for e in self.events],
                    "faults": [f.to_json() for f in self.sensor_faults],
                    "timing": timing,
                    # Each block carries N sensors' samples: the sensors one core keeps up with at this load.
                    "sensor_realtime_factor": None if rtf is None else round(rtf * self.n_sensors, 1)}
        out |= {k: v for k, v in self._decider_summary().items() if k not in ("decisions", "invalid_decisions")}
        out |= {"events": [e.to_json() for e in self.events], "faults": self.faults.to_json(), "timing": timing}
        if self.recording is not None:
            out["recordings"] = [*self.recordings, self._recording_summary()]
        return out

    @property
    def total_decisions(self) -> int:
        """Decisions over the whole stream, every sensor (a decider counts those of the current
        recording)."""
        return sum(r["decisions"] for r in self.recordings) + sum(d.decisions for d in self.deciders)

    def _decider_summary(self) -> dict:
        summary = self.decider.summary(end_sample=self._next_t)
        summary["no_decision"] = no_decision_note(self._next_t - self.decider.origin, self.cfg) \
            if summary["decisions"] == 0 else None
        return summary

    def _recording_summary(self) -> dict:
        return {"recording": self.recording, "start_s": round(self._recording_start / self.cfg.fs, 6),
                "seconds": round((self._next_t - self._recording_start) / self.cfg.fs, 6),
                **self._decider_summary(), "events": self._recording_events}

    def _start_recording(self, name: str, first: int) -> None:
        """A replayed folder's next recording: its own stream (STFT and decider start over)."""
        if self.n_sensors > 1:
            raise InputError("a folder of recordings streams as one sensor; a fleet replays one recording")
        if self.recording is not None:
            self.recordings.append(self._recording_summary())
        self.recording, self._recording_start, self._recording_events = name, int(first), 0
        if self._next_seq is not None:
            self.stft.reset(origin=first)
            self._restart_decisions()
        self.decider.reset(origin=first)
        if self.on_recording is not None:
            self.on_recording(name, first)

    # Faults ----------------------------------------------------------------------------------
    def _accept_sequence(self, block: Block, n: int, start: float, decisions: list[Decision]) -> bool:
        """False for a repeated or late block (skipped); fills or restarts across a gap (every
        sensor: they share the clock)."""
        if self._next_seq is None:
            if block.t_sample_index != self.stft.samples_seen:
                self.stft.reset(origin=block.t_sample_index)
            return True
        if block.seq < self._next_seq:
            for faults in self.sensor_faults:
                faults.repeated_blocks += 1
            return False
        missing = block.t_sample_index - self._next_t
        if block.seq > self._next_seq or missing != 0:
            fill = 0 < missing <= self.cfg.window_samples
            for faults in self.sensor_faults:
                faults.gaps += 1
                faults.dropped_blocks += max(0, block.seq - self._next_seq)
                if fill:
                    faults.filled_samples += missing
                elif missing != 0:
                    faults.restarts += 1
            if fill:
                shape = (missing,) if self.n_sensors == 1 else (self.n_sensors, missing)
                self._feed(np.zeros(shape, dtype=np.float32), np.ones(shape, dtype=bool),
                           block.t_sample_index, start, decisions)
            elif missing != 0:  # too long to bridge, or the clock went backwards: start over
                self.stft.reset(origin=block.t_sample_index)
                self._restart_decisions()
                self._fault_end[:] = block.t_sample_index
        return True

    def _check_stall(self, arrived: float, n: int) -> None:
        # A stall loses no samples by itself (a gap in sequence numbers does that): it is counted
        # and measured, and decisions stay valid.
        if self._last_arrival is not None:
            waited = arrived - self._last_arrival
            if waited > STALL_PERIODS * self._last_period:
                for faults in self.sensor_faults:
                    faults.stalls += 1
                    faults.longest_stall_s = max(faults.longest_stall_s, round(waited, 6))
        self._last_arrival = arrived
        self._last_period = n / self.cfg.fs

    def _fault_mask(self, samples: np.ndarray) -> np.ndarray | None:
        """Non-finite (and, with ``full_scale``, saturated) samples, shaped as ``samples`` ((n,) or
        (N, n)), counted per sensor."""
        # Fast path (one reduction per block): a finite sum means every sample is finite (a NaN
        # or an Inf makes the sum non-finite; an overflowing sum just takes the full check).
        with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf: nan, which is the point
            total = np.add.reduce(samples, axis=None)
        if math.isfinite(total) and (
                self.full_scale is None or (samples.size and max(samples.max(), -samples.min()) < self.full_scale)):
            return None
        finite = np.isfinite(samples)
        bad = ~finite
        if self.full_scale is not None:
            bad |= finite & (np.abs(np.where(finite, samples, 0)) >= self.full_scale)
        if not bad.any():
            return None
        rows, finite = bad.reshape(self.n_sensors, -1), finite.reshape(self.n_sensors, -1)
        for sensor in np.flatnonzero(rows.any(axis=1)).tolist():
            faults = self.sensor_faults[sensor]
            faults.nonfinite_samples += int((~finite[sensor]).sum())
            faults.saturated_samples += int((rows[sensor] & finite[sensor]).sum())
            faults.faulty_blocks += 1
        return bad

    def _convert(self, samples: np.ndarray, bad: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """The device's converter: int16 counts, clipped samples counted and marked as faulty."""
        counts, clipped = self.adc.convert(samples)
        if not clipped.any():
            return counts, bad
        rows = clipped.reshape(self.n_sensors, -1)
        bad_rows = None if bad is None else bad.reshape(self.n_sensors, -1)
        for sensor in np.flatnonzero(rows.any(axis=1)).tolist():
            faults = self.sensor_faults[sensor]
            faults.saturated_samples += int(np.count_nonzero(rows[sensor]))
            if bad_rows is None or not bad_rows[sensor].any():
                faults.faulty_blocks += 1
        return counts, clipped if bad is None else bad | clipped

    # Feeding and deciding ----------------------------------------------------------------------
    def _restart_decisions(self) -> None:
        """The first decision of a (re)started stream: frame n_frames + phase (group 0's)."""
        self._first_decision = self.cfg.n_frames + self.phase
        self._next_decision = self._first_decision

    def _feed(self, samples: np.ndarray, bad: np.ndarray | None, block_end: int, start: float,
              decisions: list[Decision]) -> None:
        """Push samples ((n,) or (N, n)), stopping at each decision point to classify that exact image."""
        stft, hop, nperseg = self.stft, self._hop, self._nperseg
        lone = samples.ndim == 1
        pos, n = 0, samples.shape[-1]
        while pos < n:
            # The sample after which frame number `_next_decision` exists.
            due = stft.origin + (self._next_decision - 1) * hop + nperseg
            base = stft.samples_seen
            take = min(n - pos, max(due - base, 1))
            if bad is not None:
                self._mark_faults((bad[pos:pos + take] if lone else bad[:, pos:pos + take]).reshape(self.n_sensors, -1),
                                  base)
            # A lone sensor's frames are computed at the decision, all pending ones in one vectorised
            # step (numpy's per-call cost paid once per decision); a fleet's as they complete, every
            # sensor's in one step (the per-call cost is shared by N, and no block carries N x 14
            # frames: an even block time).
            stft.feed(samples if take == n else samples[pos:pos + take] if lone else samples[:, pos:pos + take],
                      self._max_pending)
            pos += take
            if base + take >= due:  # frame `_next_decision` exists: stft.frames >= _next_decision
                self._decide_group(block_end, start, decisions)

    def _mark_faults(self, bad: np.ndarray, base: int) -> None:
        hit = bad.any(axis=1)
        if hit.any():
            last = bad.shape[1] - np.argmax(bad[:, ::-1], axis=1)  # one past the last bad sample
            self._fault_end = np.where(hit, np.maximum(self._fault_end, base + last), self._fault_end)

    def _decide_group(self, block_end: int, start: float, decisions: list[Decision]) -> None:
        """The sensors whose turn this frame is decide; the next decision frame is set."""
        every, n_groups = self.policy.every_frames, len(self._groups)
        group = (self._next_decision - self._first_decision) % every
        if group < n_groups:
            self._decide(self._groups[group], block_end, start, decisions)
        self._next_decision = self.stft.frames + (1 if group + 1 < n_groups else every - group)

    def _decide(self, sensors: np.ndarray | None, block_end: int, start: float,
                decisions: list[Decision]) -> None:
        """Classify the current window of every sensor (or of ``sensors``, a staggered group)."""
        stft = self.stft
        window_start, window_end = stft.window_start, stft.last_frame_end
        k = self.n_sensors if sensors is None else sensors.size
        images = self._images[:k]
        stft.images_into(images[..., 0], sensors)
        if k == 1:
            probabilities = (self.interpreter.run(images[0]),)
        else:
            probabilities = self.interpreter.run_batch(images, max_batch=self.max_batch)
        valid = (self._fault_end <= window_start).tolist()
        for row, sensor in enumerate(range(k) if sensors is None else sensors.tolist()):
            ok = valid[sensor]
            decision, event = self.deciders[sensor].update(probabilities[row], window_start=window_start,
                                                           sample_index=window_end, valid=ok,
                                                           reason="" if ok else "window touched a fault")
            if not decision.valid:
                self.sensor_faults[sensor].invalid_decisions += 1
            if event is not None:
                if self.recording is not None:
                    event = dataclasses.replace(event, recording=self.recording)
                    self._recording_events += 1
                self.events.append(event)
                if self.on_event is not None:
                    self.on_event(event)
            decisions.append(decision)
        self.timing.record_decision(block_end - window_end, self.clock() - start)


def no_decision_note(samples: int, cfg: SpectrogramConfig) -> str:
    """Why a stream (or a recording) took no decision."""
    return f"no decision: {int(samples)} samples, a window needs {cfg.window_samples}"
