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


def _check_block(block: int) -> int:
    if not isinstance(block, (int, np.integer)) or isinstance(block, bool) or block < 1:
        raise ConfigError(f"block size {block!r} must be an integer >= 1 samples (e.g. 256)")
    return int(block)


class ArraySource:
    """Replays a signal already in memory, ``block`` samples at a time."""

    full_scale: float | None = None

    def __init__(self, signal: np.ndarray, fs: float, *, block: int = DEFAULT_BLOCK, name: str = "array"):
        signal = np.asarray(signal)
        if signal.ndim != 1 or not np.issubdtype(signal.dtype, np.number) or np.iscomplexobj(signal):
            raise InputError(f"{name}: a stream must be one real-valued channel, got {signal.dtype} "
                             f"of shape {signal.shape}")
        self.signal = signal.astype(np.float32, copy=False)
        self.fs = float(fs)
        self.block = _check_block(block)
        self.name = name

    def __len__(self) -> int:
        return self.signal.size

    def blocks(self) -> Iterator[Block]:
        for seq, start in enumerate(range(0, self.signal.size, self.block)):
            yield Block(seq, self.signal[start:start + self.block], start)


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

    Several recordings play one after another; ``recording`` picks one by id. A recording at
    another rate is refused unless ``resample`` (polyphase, as the training side resamples).
    """
    from edgecnn.readers import read_recordings  # the data layer: numpy/scipy only

    recordings = read_recordings(path) if options is None else read_recordings(path, options=options)
    if recording is not None:
        recordings = [r for r in recordings if str(r.id) == recording]
        if not recordings:
            raise InputError(f"{path}: no recording with id {recording!r}")
    if not recordings:
        raise InputError(f"{path}: no recordings found")
    pieces = []
    for rec in recordings:
        signal = rec.continuous()
        if float(rec.fs) != float(fs):
            if not resample:
                raise InputError(
                    f"{path}: recording {rec.id} is at {float(rec.fs):g} Hz but the bundle needs "
                    f"{float(fs):g} Hz; pass --resample to resample it")
            from edgecnn.dataset import resample_to

            signal = np.asarray(resample_to(signal, float(rec.fs), float(fs)), dtype=np.float32)
        pieces.append(signal)
    name = str(path) if len(recordings) > 1 else f"{path}:{recordings[0].id}"
    return ArraySource(np.concatenate(pieces), fs, block=block, name=name)


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
    (one NaN or Inf sample in the middle of the block)."""
    drop, repeat, nan, inf = set(drop), set(repeat), set(nan), set(inf)
    for block in blocks:
        if block.seq in drop:
            continue
        if block.seq in nan or block.seq in inf:
            samples = block.samples.copy()
            samples[samples.size // 2] = np.nan if block.seq in nan else np.inf
            block = dataclasses.replace(block, samples=samples)
        yield block
        if block.seq in repeat:
            yield block
