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

Device side: no TensorFlow. The interpreter is anything with ``run(image) -> probabilities``.
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
    """One sensor stream through one model: ``process(block)`` returns the decisions it took."""

    def __init__(self, cfg: SpectrogramConfig, classes: list[str], interpreter, *,
                 policy: DecisionPolicy | None = None, magnitude_fn: MagnitudeFn = frame_magnitudes,
                 full_scale: float | None = None, on_event: Callable[[Event], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter, adc: ADC | None = None,
                 on_recording: Callable[[str, int], None] | None = None, phase: int = 0) -> None:
        # Configuration
        self.cfg = cfg
        self.classes = list(classes)
        self.interpreter = interpreter
        self.policy = policy if policy is not None else DecisionPolicy()
        self.full_scale = full_scale
        self.on_event = on_event
        self.on_recording = on_recording
        self.clock = clock
        #: Frames after the first full image before the first decision (a fleet staggers its sensors'
        #: decisions over the cadence, firmware_sim.multi; 0 for a lone sensor).
        self.phase = int(phase)
        self.adc = adc
        # Working variables
        self.stft = StreamingSTFT(cfg, magnitude_fn=magnitude_fn,
                                  sample_dtype=np.int16 if adc is not None else np.float32)
        self._hop, self._nperseg = cfg.hop, cfg.nperseg  # read once per block: plain attributes
        self.decider = Decider(self.classes, cfg.fs, self.policy)
        self.timing = StreamTiming(cfg.fs)
        self.reset()

    def reset(self) -> None:
        if self.adc is not None:
            self.adc.reset()
        self.stft.reset()
        self.decider.reset()
        self.timing.reset()
        self.faults = FaultCounters()
        self.events: list[Event] = []
        self._next_seq: int | None = None
        self._next_t = 0
        self._last_arrival: float | None = None
        self._last_period = 0.0
        self._fault_end = -1  # one past the newest faulty (or filled) sample
        self._next_decision = self.cfg.n_frames + self.phase
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
        """One block: returns the decisions it completed. ``arrived`` (clock seconds) checks for a
        stall: a block later than ``STALL_PERIODS`` periods of the previous one after it."""
        start = self.clock()
        samples = np.asarray(block.samples, dtype=np.float32).ravel()
        if arrived is not None:
            self._check_stall(arrived, samples.size)
        decisions: list[Decision] = []
        if block.recording is not None and block.recording != self.recording:
            self._start_recording(block.recording, block.t_sample_index)
        if not self._accept_sequence(block, samples.size, start, decisions):
            self.timing.record_block(samples.size, self.clock() - start)
            return decisions
        bad = self._fault_mask(samples)
        if bad is not None:
            samples = np.where(bad, np.float32(0.0), samples)
        if self.adc is not None:
            samples, bad = self._convert(samples, bad)
        self._feed(samples, bad, block.t_sample_index + samples.size, start, decisions)
        self._next_seq = block.seq + 1
        self._next_t = block.t_sample_index + samples.size
        self.timing.record_block(samples.size, self.clock() - start)
        return decisions

    def summary(self) -> dict:
        """Figures of the whole stream; with recordings (a replayed folder), ``recordings`` holds
        each one's decisions, states and events (the decider restarts at each recording)."""
        out = {
            "samples": int(self.stft.samples_seen),
            "frames": int(self.stft.frames),
            "decisions": int(self.total_decisions),
            "invalid_decisions": int(self.faults.invalid_decisions),
            **{k: v for k, v in self._decider_summary().items() if k not in ("decisions", "invalid_decisions")},
            "events": [e.to_json() for e in self.events],
            "faults": self.faults.to_json(),
            "timing": self.timing.summary(),
        }
        if self.recording is not None:
            out["recordings"] = [*self.recordings, self._recording_summary()]
        return out

    @property
    def total_decisions(self) -> int:
        """Decisions over the whole stream (the decider counts those of the current recording)."""
        return sum(r["decisions"] for r in self.recordings) + self.decider.decisions

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
        if self.recording is not None:
            self.recordings.append(self._recording_summary())
        self.recording, self._recording_start, self._recording_events = name, int(first), 0
        if self._next_seq is not None:
            self.stft.reset(origin=first)
            self._next_decision = self.cfg.n_frames + self.phase
        self.decider.reset(origin=first)
        if self.on_recording is not None:
            self.on_recording(name, first)

    # Faults ----------------------------------------------------------------------------------
    def _accept_sequence(self, block: Block, n: int, start: float, decisions: list[Decision]) -> bool:
        """False for a repeated or late block (skipped); fills or restarts across a gap."""
        if self._next_seq is None:
            if block.t_sample_index != self.stft.samples_seen:
                self.stft.reset(origin=block.t_sample_index)
            return True
        if block.seq < self._next_seq:
            self.faults.repeated_blocks += 1
            return False
        missing = block.t_sample_index - self._next_t
        if block.seq > self._next_seq or missing != 0:
            self.faults.gaps += 1
            self.faults.dropped_blocks += max(0, block.seq - self._next_seq)
            if 0 < missing <= self.cfg.window_samples:
                self.faults.filled_samples += missing
                self._feed(np.zeros(missing, dtype=np.float32), np.ones(missing, dtype=bool),
                           block.t_sample_index, start, decisions)
            elif missing != 0:  # too long to bridge, or the clock went backwards: start over
                self.faults.restarts += 1
                self.stft.reset(origin=block.t_sample_index)
                self._next_decision = self.cfg.n_frames + self.phase
                self._fault_end = block.t_sample_index
        return True

    def _check_stall(self, arrived: float, n: int) -> None:
        # A stall loses no samples by itself (a gap in sequence numbers does that): it is counted
        # and measured, and decisions stay valid.
        if self._last_arrival is not None:
            waited = arrived - self._last_arrival
            if waited > STALL_PERIODS * self._last_period:
                self.faults.stalls += 1
                self.faults.longest_stall_s = max(self.faults.longest_stall_s, round(waited, 6))
        self._last_arrival = arrived
        self._last_period = n / self.cfg.fs

    def _fault_mask(self, samples: np.ndarray) -> np.ndarray | None:
        # Fast path (one reduction per block): a finite sum means every sample is finite (a NaN
        # or an Inf makes the sum non-finite; an overflowing sum just takes the full check).
        with np.errstate(invalid="ignore", over="ignore"):  # inf + -inf: nan, which is the point
            total = np.add.reduce(samples)
        if math.isfinite(total) and (
                self.full_scale is None or (samples.size and max(samples.max(), -samples.min()) < self.full_scale)):
            return None
        finite = np.isfinite(samples)
        bad = ~finite
        n_nonfinite = int(bad.sum())
        n_saturated = 0
        if self.full_scale is not None:
            saturated = finite & (np.abs(samples) >= self.full_scale)
            n_saturated = int(saturated.sum())
            bad |= saturated
        if not (n_nonfinite or n_saturated):
            return None
        self.faults.nonfinite_samples += n_nonfinite
        self.faults.saturated_samples += n_saturated
        self.faults.faulty_blocks += 1
        return bad

    def _convert(self, samples: np.ndarray, bad: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """The device's converter: int16 counts, clipped samples counted and marked as faulty."""
        counts, clipped = self.adc.convert(samples)
        n_clipped = int(np.count_nonzero(clipped))
        if not n_clipped:
            return counts, bad
        self.faults.saturated_samples += n_clipped
        if bad is None:
            self.faults.faulty_blocks += 1
            return counts, clipped
        return counts, bad | clipped

    # Feeding and deciding ----------------------------------------------------------------------
    def _feed(self, samples: np.ndarray, bad: np.ndarray | None, block_end: int, start: float,
              decisions: list[Decision]) -> None:
        """Push samples, stopping at each decision point to classify that exact image."""
        stft, hop, nperseg = self.stft, self._hop, self._nperseg
        pos, n = 0, samples.shape[0]
        while pos < n:
            # The sample after which frame number `_next_decision` exists.
            due = stft.origin + (self._next_decision - 1) * hop + nperseg
            base = stft.samples_seen
            take = min(n - pos, max(due - base, 1))
            if bad is not None:
                hits = np.flatnonzero(bad[pos:pos + take])
                if hits.size:
                    self._fault_end = max(self._fault_end, base + int(hits[-1]) + 1)
            # Frames are computed at the decision, all pending ones in one vectorised step.
            stft.feed(samples if take == n else samples[pos:pos + take])
            pos += take
            if base + take >= due:  # frame `_next_decision` exists: stft.frames >= _next_decision
                decisions.append(self._decide(block_end, start))
                self._next_decision = stft.frames + self.policy.every_frames

    def _decide(self, block_end: int, start: float) -> Decision:
        stft = self.stft
        window_start, window_end = stft.window_start, stft.last_frame_end
        valid = self._fault_end <= window_start
        probabilities = self.interpreter.run(stft.image())
        decision, event = self.decider.update(probabilities, window_start=window_start,
                                              sample_index=window_end, valid=valid,
                                              reason="" if valid else "window touched a fault")
        if not decision.valid:
            self.faults.invalid_decisions += 1
        if event is not None:
            if self.recording is not None:
                event = dataclasses.replace(event, recording=self.recording)
                self._recording_events += 1
            self.events.append(event)
            if self.on_event is not None:
                self.on_event(event)
        self.timing.record_decision(block_end - window_end, self.clock() - start)
        return decision


def no_decision_note(samples: int, cfg: SpectrogramConfig) -> str:
    """Why a stream (or a recording) took no decision."""
    return f"no decision: {int(samples)} samples, a window needs {cfg.window_samples}"
