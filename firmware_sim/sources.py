"""Sample sources: blocks with sequence numbers, as a sensor's DMA half-buffers deliver them.

Every source has ``fs`` and ``block`` (samples per block) and yields :class:`Block` objects whose
``seq`` counts blocks and whose ``t_sample_index`` is the absolute index of the block's first
sample: the sample count is the clock. Sources:

- :class:`SynthSource`: a live synthetic sensor on ``edgecnn.synth`` (spec
  ``synth:duration=60,onset=30,seed=1``), rendered segment by segment so memory stays flat;
- :class:`ArraySource` / :func:`file_source`: replay of a signal or of every format the data
  layer reads (``edgecnn.readers``), refused at another rate unless resampling is asked for;
- :class:`RawSource`: raw int16 (with a scale) or float32 samples from a binary stream (stdin).

:func:`paced` delays blocks to the sensor rate (``--realtime``); :func:`inject_faults` drops,
repeats or corrupts blocks for fault tests. Device side: numpy only, no TensorFlow; time is
passed in (``clock``/``sleep`` parameters) so tests are deterministic.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from edgecnn import synth
from edgecnn.errors import ConfigError, InputError

DEFAULT_BLOCK = 256
#: Seconds the synthetic sensor renders at a time (``synth.MachineStream.segments``): memory holds
#: about one segment whatever the duration; the signal does not depend on this value.
SYNTH_SEGMENT_S = 1.0


@dataclasses.dataclass(frozen=True)
class Block:
    """One block of samples: ``seq`` (block counter), float32 ``samples``, first sample's index."""

    seq: int
    samples: np.ndarray
    t_sample_index: int
    recording: str | None = None
    """The recording a replayed file or folder's block belongs to (a block never spans two)."""


def _check_block(block: int) -> int:
    if not isinstance(block, (int, np.integer)) or isinstance(block, bool) or block < 1:
        raise ConfigError(f"block size {block!r} must be an integer >= 1 samples (e.g. 256)")
    return int(block)


class ArraySource:
    """Replays a signal already in memory, ``block`` samples at a time.

    ``recordings`` (name, first sample) marks where each recording of a replayed folder starts:
    blocks then never span two recordings and carry the recording's name.
    """

    full_scale: float | None = None

    def __init__(self, signal: np.ndarray, fs: float, *, block: int = DEFAULT_BLOCK, name: str = "array",
                 recordings: list[tuple[str, int]] | None = None):
        signal = np.asarray(signal)
        if signal.ndim != 1 or not np.issubdtype(signal.dtype, np.number) or np.iscomplexobj(signal):
            raise InputError(f"{name}: a stream must be one real-valued channel, got {signal.dtype} "
                             f"of shape {signal.shape}")
        self.signal = signal.astype(np.float32, copy=False)
        self.fs = float(fs)
        self.block = _check_block(block)
        self.name = name
        self.recordings = list(recordings or [])

    def __len__(self) -> int:
        return self.signal.size

    def blocks(self) -> Iterator[Block]:
        if not self.recordings:
            for seq, start in enumerate(range(0, self.signal.size, self.block)):
                yield Block(seq, self.signal[start:start + self.block], start)
            return
        seq = 0
        ends = [start for _, start in self.recordings[1:]] + [self.signal.size]
        for (recording, first), end in zip(self.recordings, ends):
            for start in range(first, end, self.block):
                yield Block(seq, self.signal[start:min(start + self.block, end)], start, recording)
                seq += 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class SynthStreamSpec:
    """A synthetic machine stream: healthy, faulty from ``onset`` s, or faulty throughout."""

    duration: float = 60.0
    """Seconds of signal."""
    onset: float | None = None
    """Fault onset in seconds (class A before, B from then on); None: no onset."""
    faulty: bool = False
    """Faulty (class B) from the start."""
    seed: int = 0
    """Seed of the machine and of every random draw."""
    severity: float | None = None
    """Defect impact level (peak over noise); None draws it like the training data."""
    difficulty: float = 1.0
    """How far severities reach into the noise (as ``edgecnn.synth``)."""

    @classmethod
    def parse(cls, text: str) -> SynthStreamSpec:
        """``synth`` or ``synth:key=value,...`` with keys duration, onset, faulty, seed, severity,
        difficulty."""
        head, _, body = text.partition(":")
        if head != "synth":
            raise ConfigError(f"synthetic source {text!r} must start with 'synth'")
        kinds = {"duration": float, "onset": float, "faulty": _parse_bool, "seed": int,
                 "severity": float, "difficulty": float}
        values = {}
        for item in filter(None, (part.strip() for part in body.split(","))):
            key, eq, value = item.partition("=")
            if not eq or key not in kinds:
                raise ConfigError(f"synthetic source item {item!r} must be key=value with key in "
                                  f"{sorted(kinds)} (e.g. synth:duration=60,onset=30,seed=1)")
            try:
                values[key] = kinds[key](value)
            except ValueError:
                raise ConfigError(f"synthetic source: {key}={value!r} is not a valid "
                                  f"{kinds[key].__name__.strip('_')}") from None
        spec = cls(**values)
        if not spec.duration > 0:
            raise ConfigError(f"synthetic source: duration={spec.duration} must be > 0 s")
        if spec.onset is not None and not 0 <= spec.onset < spec.duration:
            raise ConfigError(
                f"synthetic source: onset={spec.onset} must be in [0, duration={spec.duration})")
        return spec


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise ValueError(text)


class SynthSource:
    """A live synthetic sensor: one machine from ``edgecnn.synth``, optionally developing a fault."""

    full_scale: float | None = None

    def __init__(self, spec: SynthStreamSpec | str, fs: float = synth.FS, *, block: int = DEFAULT_BLOCK):
        self.spec = SynthStreamSpec.parse(spec) if isinstance(spec, str) else spec
        self.fs = float(fs)
        self.block = _check_block(block)
        self.name = "synth"
        self.n_samples = int(round(self.spec.duration * self.fs))

    def __len__(self) -> int:
        return self.n_samples

    def segments(self) -> Iterator[np.ndarray]:
        """The signal in consecutive float32 pieces of ``SYNTH_SEGMENT_S``, rendered lazily: their
        concatenation is exactly ``synth.render_stream`` of the same spec."""
        spec = self.spec
        stream = synth.MachineStream(spec.duration, seed=spec.seed, fs=self.fs, fault_onset_s=spec.onset,
                                     faulty=spec.faulty, difficulty=spec.difficulty, severity=spec.severity)
        return stream.segments(SYNTH_SEGMENT_S)

    def blocks(self) -> Iterator[Block]:
        return _reblock(self.segments(), self.block)


def _reblock(pieces: Iterable[np.ndarray], block: int, seq0: int = 0, t0: int = 0) -> Iterator[Block]:
    """Cut consecutive pieces into blocks of ``block`` samples (the last one may be shorter)."""
    pending = np.zeros(0, dtype=np.float32)
    seq, t = seq0, t0
    for piece in pieces:
        pending = np.concatenate((pending, piece)) if pending.size else piece
        n_full = pending.size // block * block
        for start in range(0, n_full, block):
            yield Block(seq, pending[start:start + block], t)
            seq, t = seq + 1, t + block
        pending = pending[n_full:]
    if pending.size:
        yield Block(seq, pending, t)


def file_source(path: str | Path, fs: float, *, block: int = DEFAULT_BLOCK, resample: bool = False,
                recording: str | None = None, options: Any = None) -> ArraySource:
    """Replay a recording file or folder (any format ``edgecnn.readers`` reads) at rate ``fs``.

    Several recordings play one after another, each block tagged with its recording's id;
    ``recording`` picks one by id. A recording at another rate is refused unless ``resample``
    (polyphase, as the training side resamples). NaN/Inf samples (a logger dropout) are kept: the
    device loop counts them and marks the decisions they touch invalid, as a live source's faults.
    """
    from edgecnn.readers import nonfinite_allowed, read_recordings  # the data layer: numpy/scipy only

    with nonfinite_allowed():
        recordings = read_recordings(path) if options is None else read_recordings(path, options=options)
    if recording is not None:
        recordings = [r for r in recordings if str(r.id) == recording]
        if not recordings:
            raise InputError(f"{path}: no recording with id {recording!r}")
    if not recordings:
        raise InputError(f"{path}: no recordings found")
    pieces, starts, first = [], [], 0
    for rec in recordings:
        signal = rec.continuous()
        if float(rec.fs) != float(fs):
            if not resample:
                raise InputError(
                    f"{path}: recording {rec.id} is at {float(rec.fs):g} Hz but the bundle needs "
                    f"{float(fs):g} Hz; pass --resample to resample it")
            signal = _resample_keeping_dropouts(signal, float(rec.fs), float(fs))
        pieces.append(signal)
        starts.append((str(rec.id), first))
        first += signal.size
    name = str(path) if len(recordings) > 1 else f"{path}:{recordings[0].id}"
    return ArraySource(np.concatenate(pieces), fs, block=block, name=name, recordings=starts)


#: Output samples either side of a dropout that resampling marks as non-finite too (the
#: polyphase filter spreads every input sample over about this many output samples).
RESAMPLE_DROPOUT_REACH = 32


def _resample_keeping_dropouts(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample as training does; NaN/Inf stretches stay NaN (widened by the filter's reach)
    instead of spreading over the whole recording."""
    from edgecnn.dataset import resample_to

    bad = ~np.isfinite(signal)
    if not bad.any():
        return np.asarray(resample_to(signal, fs_in, fs_out), dtype=np.float32)
    out = np.asarray(resample_to(np.where(bad, 0.0, signal).astype(np.float32), fs_in, fs_out), dtype=np.float32)
    hits = np.flatnonzero(bad)
    centre = np.rint(hits * (fs_out / fs_in)).astype(np.int64)
    marked = np.zeros(out.size + 1, dtype=np.int64)
    np.add.at(marked, np.clip(centre - RESAMPLE_DROPOUT_REACH, 0, out.size), 1)
    np.add.at(marked, np.clip(centre + RESAMPLE_DROPOUT_REACH + 1, 0, out.size), -1)
    out[np.cumsum(marked[:-1]) > 0] = np.nan
    return out


class RawSource:
    """Raw little-endian samples from a binary stream: int16 (times ``scale``) or float32."""

    DTYPES = {"int16": np.dtype("<i2"), "float32": np.dtype("<f4")}

    def __init__(self, stream: BinaryIO, fs: float, *, dtype: str = "int16", scale: float = 1.0 / 32768,
                 block: int = DEFAULT_BLOCK, name: str = "stdin"):
        if dtype not in self.DTYPES:
            raise ConfigError(f"raw sample type {dtype!r} must be one of {sorted(self.DTYPES)}")
        if not np.isfinite(scale) or scale <= 0:
            raise ConfigError(f"raw int16 scale={scale!r} must be a finite number > 0")
        self.stream = stream
        self.fs = float(fs)
        self.dtype = self.DTYPES[dtype]
        self.scale = float(scale) if dtype == "int16" else 1.0
        self.block = _check_block(block)
        self.name = name
        #: ADC full scale in stream units: int16 saturates at +-32767 * scale.
        self.full_scale = 32767 * self.scale if dtype == "int16" else None
        self.trailing_bytes = 0

    def blocks(self) -> Iterator[Block]:
        size = self.block * self.dtype.itemsize
        seq = t = 0
        while True:
            data = _read_fully(self.stream, size)
            usable = len(data) // self.dtype.itemsize * self.dtype.itemsize
            self.trailing_bytes += len(data) - usable
            if usable:
                samples = np.frombuffer(data[:usable], dtype=self.dtype).astype(np.float32)
                if self.dtype.kind == "i":
                    samples *= np.float32(self.scale)
                yield Block(seq, samples, t)
                seq, t = seq + 1, t + samples.size
            if len(data) < size:
                return


def _read_fully(stream: BinaryIO, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        data = stream.read(size - got)
        if not data:
            break
        chunks.append(data)
        got += len(data)
    return b"".join(chunks)


def open_source(text: str, fs: float, *, block: int = DEFAULT_BLOCK, resample: bool = False,
                raw_dtype: str = "int16", raw_scale: float = 1.0 / 32768, source_fs: float | None = None,
                stdin: BinaryIO | None = None, options: Any = None):
    """The source a ``--source`` value names: ``synth[:spec]``, ``-`` (raw stdin) or a path."""
    if text == "synth" or text.startswith("synth:"):
        return SynthSource(text, fs, block=block)
    if text == "-":
        rate = fs if source_fs is None else float(source_fs)
        if rate != float(fs):
            raise InputError(f"stdin stream at {rate:g} Hz cannot be resampled on the fly; the bundle "
                             f"needs {float(fs):g} Hz")
        import sys

        return RawSource(stdin if stdin is not None else sys.stdin.buffer, fs, dtype=raw_dtype,
                         scale=raw_scale, block=block)
    if not Path(text).exists():
        raise InputError(f"source {text!r} is neither 'synth[:spec]', '-' (stdin) nor an existing path")
    return file_source(text, fs, block=block, resample=resample, options=options)  # options: ReadOptions


def paced(blocks: Iterable[Block], fs: float, *, clock: Callable[[], float] = time.perf_counter,
          sleep: Callable[[float], None] = time.sleep) -> Iterator[Block]:
    """Deliver each block no earlier than its last sample would arrive from a real sensor."""
    start = None
    for block in blocks:
        if start is None:
            start = clock() - block.t_sample_index / fs
        due = start + (block.t_sample_index + block.samples.size) / fs
        wait = due - clock()
        if wait > 0:
            sleep(wait)
        yield block


def inject_faults(blocks: Iterable[Block], *, drop: Iterable[int] = (), repeat: Iterable[int] = (),
                  nan: Iterable[int] = (), inf: Iterable[int] = ()) -> Iterator[Block]:
    """Blocks with faults injected by sequence number: dropped, delivered twice, or corrupted
    (one NaN or Inf sample in the middle of the block; a fleet's block: in sensor 0's samples)."""
    drop, repeat, nan, inf = set(drop), set(repeat), set(nan), set(inf)
    for block in blocks:
        if block.seq in drop:
            continue
        if block.seq in nan or block.seq in inf:
            samples = block.samples.copy()
            samples.reshape(-1)[samples.shape[-1] // 2] = np.nan if block.seq in nan else np.inf
            block = dataclasses.replace(block, samples=samples)
        yield block
        if block.seq in repeat:
            yield block


# Fleets: N synchronised sensors, blocks (N, n) ------------------------------------------------
def rotated_blocks(signal: np.ndarray, n_sensors: int, *, block: int, total: int | None = None
                   ) -> Iterator[Block]:
    """Blocks of (n_sensors, block) samples where sensor i replays ``signal`` circularly from offset
    ``i * len(signal) // n_sensors`` (different machine states at once, one copy of the signal in
    memory); ``total`` samples per sensor (default one pass over the signal)."""
    signal = np.asarray(signal, dtype=np.float32).ravel()
    length = signal.size
    if length == 0:
        raise InputError("rotated_blocks: the signal is empty")
    block = _check_block(block)
    total = length if total is None else int(total)
    offsets = (np.arange(n_sensors, dtype=np.int64) * length) // n_sensors
    for seq, first in enumerate(range(0, total, block)):
        size = min(block, total - first)
        yield Block(seq, signal[(offsets[:, None] + first + np.arange(size)[None, :]) % length], first)


def synth_fleet(spec: SynthStreamSpec, n_sensors: int, fs: float, *, block: int
                ) -> tuple[list[SynthStreamSpec], Iterator[Block]]:
    """A fleet of N synthetic machines, each its own: sensor i is the machine of seed ``spec.seed + i``.

    Without an onset in ``spec`` every machine stays as the spec says (healthy, or faulty
    throughout with ``faulty=1``). With ``onset=T`` the even sensors develop a fault at their own
    onset, drawn (seeded by ``spec.seed``) uniformly in [T/2, 3T/2] and kept inside the stream, and
    the odd sensors stay healthy. Returns the per-sensor specs and the blocks (N, block), rendered
    machine by machine one segment at a time (memory: N segments).
    """
    rng = np.random.default_rng(spec.seed)
    specs = []
    for i in range(n_sensors):
        onset = None
        if spec.onset is not None and i % 2 == 0:
            onset = float(min(rng.uniform(0.5, 1.5) * spec.onset, 0.95 * spec.duration))
        specs.append(dataclasses.replace(spec, seed=spec.seed + i, onset=onset))
    sources = [SynthSource(s, fs, block=block).blocks() for s in specs]

    def blocks() -> Iterator[Block]:
        for row in zip(*sources):
            yield Block(row[0].seq, np.stack([b.samples for b in row]), row[0].t_sample_index)

    return specs, blocks()
