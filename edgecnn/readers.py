"""Readers: every supported recording format in, ``Recording`` objects out.

Formats: the reference pickle (read by ``edgecnn.safe_pickle``: plain containers and numpy arrays
rebuilt from validated dtype, shape and bytes; a pickle that would run code, or hand numpy an object
or structured dtype, is refused and runs nothing), ``.npz`` recordings
(the layout of shared/data/cwru and mfpt), WAV, CSV (one column, or time and signal), MATLAB ``.mat``
(CWRU ``X097_DE_time`` naming, MFPT ``bearing`` struct) and folders of any of these.
``read_recordings(path)`` picks the reader from the path; ``ReadOptions`` carries what a file may not
say itself: the rate of a one-column CSV without a ``# fs=`` line (``--fs``) and the WAV channel to
read (``--channel``; a multi-channel WAV without one is refused, never silently cut to its first).

numpy/scipy only: the device side replays files through this module, so scipy is imported lazily
and only where a format needs it (``.mat`` files, WAV formats other than integer PCM): reading
pickles, npz, CSV and PCM WAV must never import scipy (~17 MiB resident for ``scipy.io``).
"""

from __future__ import annotations

import dataclasses
import io
import pickle
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgecnn import safe_pickle
from edgecnn.errors import InputError

SUFFIXES = (".pkl", ".pickle", ".npz", ".wav", ".csv", ".txt", ".mat")


@dataclasses.dataclass(frozen=True)
class ReadOptions:
    """What the user tells the readers that a file may not say itself.

    ``fs``: sample rate (Hz) of one-column CSV files without a ``# fs=`` line (a file's own line wins).
    ``channel``: the WAV channel to read (0 = first); required for a WAV with more than one channel.
    """

    fs: float | None = None
    channel: int | None = None

    def __post_init__(self) -> None:
        if self.fs is not None and not (np.isfinite(self.fs) and self.fs > 0):
            raise InputError(f"--fs {self.fs!r} must be a sample rate in Hz (> 0)")
        if self.channel is not None and (isinstance(self.channel, bool) or int(self.channel) != self.channel
                                         or self.channel < 0):
            raise InputError(f"--channel {self.channel!r} must be a channel number >= 0 (0 = first)")


DEFAULT_OPTIONS = ReadOptions()


@dataclasses.dataclass
class Recording:
    """One recording: a 1-D signal, or (k, L) pre-cut windows (the reference pickle's rows)."""

    signal: np.ndarray
    fs: float
    label: str | None
    id: str
    source: str
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def is_windows(self) -> bool:
        return self.signal.ndim == 2

    @property
    def duration_s(self) -> float:
        return self.signal.size / self.fs

    def continuous(self) -> np.ndarray:
        """The samples as one 1-D float32 array (pre-cut windows played back to back)."""
        return np.ascontiguousarray(self.signal, dtype=np.float32).reshape(-1)


def read_recordings(path: str | Path, *, progress: Callable[[int, int], None] | None = None,
                    options: ReadOptions = DEFAULT_OPTIONS) -> list[Recording]:
    """Read a file or a folder (recursively, sorted) of supported recordings."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                       and not p.name.startswith("."))
        if not files:
            raise InputError(f"{path}: no recordings found (supported: {', '.join(SUFFIXES)})")
        out: list[Recording] = []
        for i, file in enumerate(files):
            rel_parent = file.parent.relative_to(path)
            folder_label = rel_parent.parts[0] if rel_parent.parts else None
            out.extend(_read_file(file, folder_label=folder_label, options=options))
            if progress is not None:
                progress(i + 1, len(files))
        return out
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    return _read_file(path, folder_label=None, options=options)


def _read_file(path: Path, *, folder_label: str | None, options: ReadOptions) -> list[Recording]:
    suffix = path.suffix.lower()
    readers: dict[str, Callable[[Path], list[Recording]]] = {
        ".pkl": read_pickle, ".pickle": read_pickle, ".npz": read_npz, ".mat": read_mat,
        ".wav": lambda p: read_wav(p, channel=options.channel),
        ".csv": lambda p: read_csv(p, fs=options.fs), ".txt": lambda p: read_csv(p, fs=options.fs)}
    reader = readers.get(suffix)
    if reader is None:
        raise InputError(f"{path}: unsupported file type {suffix!r} (supported: {', '.join(SUFFIXES)})")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    recordings = reader(path)
    if folder_label is not None:
        for rec in recordings:
            if rec.meta.get("label_from") == "file name":
                rec.label = folder_label
                rec.meta["label_from"] = "folder"
    return recordings


# --- validation -------------------------------------------------------------------------------------
def as_signal(values: Any, source: str, *, what: str = "signal", ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    """Validate a signal array (real numbers, finite, non-empty) and return it as float32."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{source}: {what} has dtype {arr.dtype}; need real numbers (int or float)")
    if arr.ndim not in ndim:
        raise InputError(f"{source}: {what} must be {' or '.join(f'{d}-D' for d in ndim)}, got shape {arr.shape}")
    if arr.size == 0:
        raise InputError(f"{source}: {what} is empty")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise InputError(f"{source}: {what} has {bad} NaN/Inf samples; clean or drop the recording")
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4 and np.abs(arr).max() > np.finfo(np.float32).max:
        raise InputError(f"{source}: {what} has values beyond float32's range (max |x| {np.abs(arr).max():.3g}); "
                         f"rescale the recording")
    return arr.astype(np.float32, copy=False)


def _reason(exc: BaseException) -> str:
    """A parser's exception as one line (some span several) for an InputError message."""
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _as_rate(value: Any, source: str) -> float:
    try:
        fs = float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        raise InputError(f"{source}: sample rate {value!r} is not a number") from None
    if not np.isfinite(fs) or fs <= 0:
        raise InputError(f"{source}: sample rate {fs!r} must be a finite number of Hz > 0")
    return fs


# --- the reference pickle ---------------------------------------------------------------------------
def load_pickle_safely(path: Path) -> Any:
    """Unpickle plain data only (``edgecnn.safe_pickle``: arrays rebuilt from validated dtype, shape
    and bytes, nothing called); every failure becomes an InputError."""
    try:
        return safe_pickle.load(path)
    except (safe_pickle.PickleRefused, pickle.UnpicklingError) as exc:
        raise InputError(f"{path}: unsafe or corrupt pickle ({' '.join(str(exc).split())})") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure on untrusted bytes is bad input
        raise InputError(f"{path}: not a readable data pickle ({_reason(exc)})") from None


def read_pickle(path: Path) -> list[Recording]:
    """The reference format: dict with ``signal`` (N x L), ``label`` (N x C one-hot), ``time`` (N x L).

    Optional: ``recording`` (N,) ids grouping rows into recordings (else each row is its own
    recording), ``machine`` (N,) ids of the machine each row was recorded on (one per recording; it
    becomes the recording's ``machine`` metadata), ``fs`` (else from ``time``, else 12800 Hz) and
    ``classes`` (column names; else A, B, ...).
    """
    data = load_pickle_safely(path)
    src = str(path)
    if not isinstance(data, dict):
        raise InputError(f"{src}: pickle holds a {type(data).__name__}; expected a dict with 'signal' and 'label'")
    missing = [k for k in ("signal", "label") if k not in data]
    if missing:
        raise InputError(f"{src}: pickle dict lacks {missing}; the reference format has 'time', 'signal', 'label'")
    signal = as_signal(data["signal"], src, ndim=(2,))
    label = np.asarray(data["label"])
    if label.dtype.kind not in "biuf":
        raise InputError(f"{src}: label has dtype {label.dtype}; expected one-hot numbers (N x C)")
    if label.ndim == 1:
        n_classes = int(label.max()) + 1 if label.size else 0
        index = label.astype(np.int64)
    elif label.ndim == 2:
        n_classes = label.shape[1]
        index = np.argmax(label, axis=1)
    else:
        raise InputError(f"{src}: label must be N x C one-hot (or N class indices), got shape {label.shape}")
    if label.shape[0] != signal.shape[0]:
        raise InputError(f"{src}: {signal.shape[0]} signal rows but {label.shape[0]} label rows")
    classes = data.get("classes")
    if classes is None:
        classes = [chr(ord("A") + i) if i < 26 else f"class{i}" for i in range(n_classes)]
    classes = [str(c) for c in classes]
    if len(classes) < n_classes:
        raise InputError(f"{src}: {n_classes} label columns but only {len(classes)} class names")
    fs = data.get("fs")
    if fs is None and "time" in data:
        time = np.asarray(data["time"], dtype=np.float64)
        row = time[0] if time.ndim == 2 else time
        if row.size >= 2 and np.all(np.isfinite(row[:2])) and row[1] > row[0]:
            fs = round(1.0 / (row[1] - row[0]), 6)
    fs = _as_rate(fs, src) if fs is not None else 12800.0
    groups = data.get("recording")
    if groups is None:
        groups = np.arange(signal.shape[0])
    groups = np.asarray(groups)
    if groups.shape != (signal.shape[0],):
        raise InputError(f"{src}: 'recording' must have one id per row ({signal.shape[0]}), got {groups.shape}")
    machine = data.get("machine")
    if machine is not None:
        machine = np.asarray(machine)
        if machine.shape != (signal.shape[0],) or machine.dtype.kind not in "iuU":
            raise InputError(f"{src}: 'machine' must be one integer or text id per row ({signal.shape[0]}), "
                             f"got {machine.dtype} {machine.shape}")
    out = []
    for gid in dict.fromkeys(groups.tolist()):
        rows = np.flatnonzero(groups == gid)
        cls = np.unique(index[rows])
        if cls.size != 1:
            raise InputError(f"{src}: recording {gid!r} mixes classes {[classes[c] for c in cls]}")
        meta = {"class_order": classes, "label_from": "one-hot"}
        if machine is not None:
            ids = np.unique(machine[rows])
            if ids.size != 1:
                raise InputError(f"{src}: recording {gid!r} spans machines {ids.tolist()}")
            meta["machine"] = ids[0].item()
        out.append(Recording(signal=signal[rows], fs=fs, label=classes[int(cls[0])], id=f"{path.stem}:{gid}",
                             source=src, meta=meta))
    return out


# --- npz ----------------------------------------------------------------------------------------------
def read_npz(path: Path) -> list[Recording]:
    """One recording per file: ``signal``, ``fs``, optional ``label`` and scalar metadata."""
    src = str(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            keys = list(data.files)
            if "signal" not in keys:
                raise InputError(f"{src}: npz has no 'signal' array (keys: {keys})")
            signal = as_signal(data["signal"], src, ndim=(1, 2))
            fs = _as_rate(data["fs"], src) if "fs" in keys else None
            meta: dict[str, Any] = {}
            for key in keys:
                if key in ("signal", "fs"):
                    continue
                value = data[key]
                if value.ndim == 0:
                    meta[key] = value.item()
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any parser failure on untrusted bytes is bad input
        raise InputError(f"{src}: not a readable npz recording ({_reason(exc)})") from None
    if fs is None:
        raise InputError(f"{src}: npz has no 'fs' (sample rate); add it, e.g. np.savez(..., fs=12800)")
    label = meta.pop("label", None)
    meta["label_from"] = "label key" if label is not None else "file name"
    return [Recording(signal=signal, fs=fs, label=str(label) if label is not None else path.stem,
                      id=path.stem, source=src, meta=meta)]


# --- WAV ----------------------------------------------------------------------------------------------
def read_wav(path: Path, *, channel: int | None = None) -> list[Recording]:
    """A mono WAV, or one ``channel`` of a multi-channel WAV (required: a sensor's axes or a stereo
    recorder's two inputs are different signals); integer PCM scaled to [-1, 1).

    Integer PCM (8, 16, 24, 32 bit) is read with the standard library's ``wave`` and numpy: the
    device side replays WAV files, and ``scipy.io`` costs ~17 MiB resident. Formats ``wave`` does
    not read (IEEE float, WAVE_FORMAT_EXTENSIBLE, wider integers) go to ``scipy.io.wavfile``.
    """
    import wave

    src = str(path)
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, fs = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            declared = wav.getnframes()
            if not 1 <= width <= 4 or channels < 1:
                return _read_wav_scipy(path, channel)
            raw = wav.readframes(declared)
    except wave.Error as exc:
        if str(exc).startswith("unknown format"):
            return _read_wav_scipy(path, channel)
        raise InputError(f"{src}: not a readable WAV file ({_reason(exc)})") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure on untrusted bytes is bad input
        raise InputError(f"{src}: not a readable WAV file ({_reason(exc)})") from None
    frame_bytes = channels * width
    frames = len(raw) // frame_bytes
    if frames < declared:
        raise InputError(f"{src}: WAV file is truncated (the header declares {declared} frames, the file "
                         f"holds {frames})")
    chosen = _wav_channel(src, channels, channel)
    samples = _pcm_channel(raw[:frames * frame_bytes], channels, width, chosen)
    signal = as_signal(samples, src)
    return [Recording(signal=signal, fs=_as_rate(fs, src), label=path.stem, id=path.stem, source=src,
                      meta=_wav_meta(channels, chosen))]


def _wav_channel(src: str, channels: int, channel: int | None) -> int:
    """The channel to read: the only one, or the one asked for; several and none asked for is refused."""
    if channel is None:
        if channels > 1:
            raise InputError(f"{src}: WAV has {channels} channels; choose one with --channel N "
                             f"(0 to {channels - 1})")
        return 0
    if channel >= channels:
        raise InputError(f"{src}: --channel {channel} but the WAV has {channels} channel(s) "
                         f"(0 to {channels - 1})")
    return channel


def _wav_meta(channels: int, chosen: int) -> dict[str, Any]:
    meta: dict[str, Any] = {"channels": channels, "label_from": "file name"}
    if channels > 1:
        meta["channel"] = chosen
    return meta


def _pcm_channel(raw: bytes, channels: int, width: int, channel: int) -> np.ndarray:
    """One channel of little-endian integer PCM frames, scaled to [-1, 1) (float64)."""
    if width == 3:
        # 24-bit: place the three bytes in the top of an int32 (sign included), then shift back.
        triplets = np.frombuffer(raw, dtype=np.uint8).reshape(-1, channels, 3)[:, channel, :].astype(np.int32)
        values = (triplets[:, 0] << 8 | triplets[:, 1] << 16 | triplets[:, 2] << 24) >> 8
        return values / float(1 << 23)
    # WAV stores 8-bit samples unsigned (offset 128), wider ones signed.
    dtype = {1: np.dtype("u1"), 2: np.dtype("<i2"), 4: np.dtype("<i4")}[width]
    values = np.frombuffer(raw, dtype=dtype).reshape(-1, channels)[:, channel]
    if width == 1:
        return (values.astype(np.float64) - 128.0) / 128.0
    return values / float(1 << (8 * width - 1))


def _read_wav_scipy(path: Path, channel: int | None) -> list[Recording]:
    """WAV formats the standard library does not read (IEEE float, extensible) via scipy.io."""
    from scipy.io import wavfile

    src = str(path)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fs, data = wavfile.read(path)
    except Exception as exc:  # noqa: BLE001 - any parser failure on untrusted bytes is bad input
        raise InputError(f"{src}: not a readable WAV file ({_reason(exc)})") from None
    truncated = [w for w in caught if "EOF prematurely" in str(w.message)]
    if truncated:
        raise InputError(f"{src}: WAV file is truncated ({truncated[0].message})")
    data = np.asarray(data)
    channels = 1 if data.ndim == 1 else data.shape[1]
    chosen = _wav_channel(src, channels, channel)
    if data.ndim == 2:
        data = data[:, chosen]
    if data.dtype.kind in "iu":
        info = np.iinfo(data.dtype)
        scale = float(-info.min) if data.dtype.kind == "i" else (info.max + 1) / 2.0
        offset = 0.0 if data.dtype.kind == "i" else scale
        data = (data.astype(np.float64) - offset) / scale
    signal = as_signal(data, src)
    return [Recording(signal=signal, fs=_as_rate(fs, src), label=path.stem, id=path.stem, source=src,
                      meta=_wav_meta(channels, chosen))]


# --- CSV ----------------------------------------------------------------------------------------------
_FS_HEADER = re.compile(r"fs\s*[=:]\s*([0-9.eE+-]+)")


def read_csv(path: Path, *, fs: float | None = None) -> list[Recording]:
    """One column (signal; rate from a ``# fs=...`` line, else ``fs``, else refused) or two (time in s,
    signal). Header lines before the first numeric row are skipped; numbers are parsed by ``np.loadtxt``
    (comma, semicolon or whitespace separated)."""
    src = str(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{src}: not a readable text file ({type(exc).__name__})") from None
    rates = [m.group(1) for c in _COMMENT.finditer(text) if (m := _FS_HEADER.search(c.group(0)))]
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if _numeric_fields(line) is not None), None)
    if first is None:
        raise InputError(f"{src}: no numeric rows")
    row = lines[first]
    delimiter = "," if "," in row else ";" if ";" in row else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data" and the like: checked below
            table = np.loadtxt(io.StringIO(text), dtype=np.float64, delimiter=delimiter, comments="#",
                               skiprows=first, ndmin=2)
    except (ValueError, TypeError, IndexError) as exc:
        raise _csv_error(src, lines, first, exc) from None
    if table.shape[1] not in (1, 2) or table.shape[0] == 0:
        raise InputError(f"{src}: need 1 column (signal) or 2 (time, signal) in every row")
    if table.shape[1] == 2:
        time, values = table[:, 0], table[:, 1]
        steps = np.diff(time)
        if time.size < 2 or not np.all(np.isfinite(steps)) or steps.min() <= 0:
            raise InputError(f"{src}: the time column must increase")
        if steps.max() - steps.min() > 1e-3 * steps.mean():
            raise InputError(f"{src}: the time column is not uniformly sampled")
        rate: Any = round(1.0 / steps.mean(), 3)
    else:
        values = table[:, 0]
        if rates:
            rate = rates[-1]
        elif fs is not None:
            rate = fs
        else:
            raise InputError(f"{src}: one column and no '# fs=...' line, so the sample rate is unknown; "
                             f"add the line (e.g. '# fs=12800') or pass --fs HZ")
    signal = as_signal(values, src)
    return [Recording(signal=signal, fs=_as_rate(rate, src), label=path.stem, id=path.stem, source=src,
                      meta={"label_from": "file name"})]


_COMMENT = re.compile(r"^[ \t]*#[^\n]*", re.MULTILINE)
_FIELD_SPLIT = re.compile(r"[,;\s]+")


def _numeric_fields(line: str) -> list[float] | None:
    """The numbers of a data row; None for a blank, comment or header line."""
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return None
    try:
        return [float(f) for f in _FIELD_SPLIT.split(stripped) if f]
    except ValueError:
        return None


def _csv_error(src: str, lines: list[str], first: int, exc: BaseException) -> InputError:
    """Name the first line ``np.loadtxt`` could not take (the error path only: a line-by-line scan)."""
    widths = set()
    for line_no, line in enumerate(lines[first:], first + 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        fields = _numeric_fields(stripped)
        if fields is None:
            return InputError(f"{src}:{line_no}: not a number in {stripped[:40]!r}")
        widths.add(len(fields))
        if len(widths) > 1:
            return InputError(f"{src}: need 1 column (signal) or 2 (time, signal) in every row "
                              f"(line {line_no} has {len(fields)})")
    return InputError(f"{src}: not a readable CSV ({_reason(exc)})")


# --- MATLAB -------------------------------------------------------------------------------------------
_CWRU_VAR = re.compile(r"^X(\d+)_DE_time$")
_CWRU_LABELS = (("normal", "normal"), ("IR", "inner_race"), ("OR", "outer_race"), ("B0", "ball"),
                ("Inner", "inner_race"), ("Outer", "outer_race"))


def read_mat(path: Path) -> list[Recording]:
    """CWRU files (drive-end ``X###_DE_time``) or MFPT files (``bearing`` struct with gs, sr)."""
    from scipy.io import loadmat

    src = str(path)
    try:
        data = loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # noqa: BLE001 - any parser failure on untrusted bytes is bad input
        raise InputError(f"{src}: not a readable MATLAB file ({_reason(exc)})") from None
    label = next((name for token, name in _CWRU_LABELS if token in path.stem), path.stem)
    if "bearing" in data and hasattr(data["bearing"], "gs"):
        bearing = data["bearing"]
        signal = as_signal(np.ravel(bearing.gs), src, what="bearing.gs")
        return [Recording(signal=signal, fs=_as_rate(bearing.sr, src), label=label, id=path.stem, source=src,
                          meta={"label_from": "file name", "mat_variable": "bearing.gs"})]
    de_vars = sorted(k for k in data if _CWRU_VAR.match(k))
    if not de_vars:
        raise InputError(f"{src}: no CWRU drive-end variable (X###_DE_time) nor MFPT 'bearing' struct; "
                         f"variables: {sorted(k for k in data if not k.startswith('__'))}")
    number = re.findall(r"(\d+)", path.stem)
    chosen = next((v for v in de_vars if number and _CWRU_VAR.match(v).group(1).lstrip("0")
                   == number[-1].lstrip("0")), de_vars[0])
    for key in ("fs", "Fs", "sr"):
        if key in data:
            fs = _as_rate(data[key], src)
            break
    else:
        # CWRU publishes 12 kHz and 48 kHz sets; the normal baselines were recorded at 48 kHz.
        fs = 48000.0 if ("48k" in path.stem or path.stem.lower().startswith("normal")) else 12000.0
    signal = as_signal(np.ravel(data[chosen]), src, what=chosen)
    rpm_key = chosen.replace("_DE_time", "RPM")
    meta = {"label_from": "file name", "mat_variable": chosen}
    if rpm_key in data:
        meta["rpm"] = float(np.asarray(data[rpm_key]).reshape(-1)[0])
    return [Recording(signal=signal, fs=fs, label=label, id=path.stem, source=src, meta=meta)]
