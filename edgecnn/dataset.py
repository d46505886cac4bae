"""From recordings to labelled windows: resampling, windowing, label maps, recording-level splits.

``load_windows(path, cfg)`` reads any supported file or folder, resamples every recording to the
config's rate with an exact rational ratio, cuts ``window_samples`` windows (configurable overlap)
and maps recording labels to classes. ``split_by_recording`` keeps every window of a recording on
one side of a split, so no test recording leaks into training.

A class with a single continuous recording (CWRU's one normal baseline) is cut in time into
segments that act as recordings, with no window straddling two segments, so it can still be split.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from edgecnn.config import SpectrogramConfig
from edgecnn.errors import ConfigError, InputError
from edgecnn.readers import DEFAULT_OPTIONS, ReadOptions, Recording, read_recordings

#: Largest up/down factor accepted for resampling (48828 -> 12800 Hz needs 3200/12207).
MAX_RESAMPLE_FACTOR = 100_000
#: Segments a single-recording class is cut into for splitting.
SINGLE_RECORDING_SEGMENTS = 4
#: ``overlap="auto"``: AUTO_OVERLAP when any class has fewer than AUTO_OVERLAP_MIN_WINDOWS windows
#: without overlap (tens of short recordings), else no overlap.
AUTO_OVERLAP = 0.5
AUTO_OVERLAP_MIN_WINDOWS = 100


# --- resampling --------------------------------------------------------------------------------------
def resample_ratio(fs_in: float, fs_out: float) -> tuple[int, int]:
    """Exact (up, down) with fs_out / fs_in = up / down, or InputError when no exact ratio exists."""
    ratio = Fraction(fs_out).limit_denominator(1000) / Fraction(fs_in).limit_denominator(1000)
    if abs(float(ratio) * fs_in - fs_out) > 1e-12 * fs_out:
        raise InputError(f"sample rate {fs_in!r} Hz cannot be resampled exactly to {fs_out!r} Hz "
                         f"(no small rational ratio); resample the recording to an integer rate first")
    if max(ratio.numerator, ratio.denominator) > MAX_RESAMPLE_FACTOR:
        raise InputError(f"sample rate {fs_in!r} Hz -> {fs_out!r} Hz needs the ratio {ratio}, "
                         f"too fine to resample exactly (factor limit {MAX_RESAMPLE_FACTOR})")
    return ratio.numerator, ratio.denominator


def resample_to(signal: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Resample the last axis from fs_in to fs_out (scipy.signal.resample_poly, exact ratio), float32."""
    from scipy.signal import resample_poly

    signal = np.asarray(signal, dtype=np.float32)
    if fs_in == fs_out:
        return signal
    up, down = resample_ratio(fs_in, fs_out)
    return resample_poly(signal, up, down, axis=-1).astype(np.float32)


# --- label maps --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LabelMap:
    """Recording label -> class name, from text such as ``normal=A,*=B`` (glob patterns, first match)."""

    rules: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> LabelMap:
        rules = []
        for part in (p.strip() for p in str(text).split(",")):
            if not part:
                continue
            if part.count("=") != 1:
                raise ConfigError(f"label map entry {part!r} must look like label=CLASS "
                                  f"(e.g. 'normal=A,*=B')")
            pattern, cls_name = (s.strip() for s in part.split("="))
            if not pattern or not cls_name:
                raise ConfigError(f"label map entry {part!r} has an empty label or class")
            rules.append((pattern, cls_name))
        if not rules:
            raise ConfigError(f"label map {text!r} is empty; e.g. 'normal=A,*=B'")
        return cls(tuple(rules))

    @property
    def classes(self) -> list[str]:
        """Class names in the order they first appear in the map."""
        return list(dict.fromkeys(c for _, c in self.rules))

    def __call__(self, label: str | None) -> str | None:
        rule = self.rule_for(label)
        return None if rule is None else self.rules[rule][1]

    def rule_for(self, label: str | None) -> int | None:
        """Index of the entry that decides ``label`` (the first that matches), or None."""
        for i, (pattern, _) in enumerate(self.rules):
            if label is not None and fnmatch.fnmatchcase(label, pattern):
                return i
        return None

    def unused(self, labels: Any) -> list[str]:
        """The entries (``pattern=CLASS``) that decide none of ``labels``: a typo, or shadowed by an earlier one."""
        used = {self.rule_for(label) for label in labels}
        return [f"{p}={c}" for i, (p, c) in enumerate(self.rules) if i not in used]

    def __str__(self) -> str:
        return ",".join(f"{p}={c}" for p, c in self.rules)


# --- windows -----------------------------------------------------------------------------------------
@dataclasses.dataclass
class WindowSet:
    """Labelled windows with the recording each came from."""

    windows: np.ndarray
    """(N, window_samples) float32 at the config's rate."""
    labels: np.ndarray
    """(N,) int64 index into ``classes``."""
    groups: np.ndarray
    """(N,) int64 index into ``recordings``."""
    classes: list[str]
    recordings: list[dict[str, Any]]
    """Per recording: id, label, class, source, fs (native), n_windows and metadata."""
    dropped: dict[str, int] = dataclasses.field(default_factory=dict)
    """Recordings left out and why (``unmapped`` label, ``too_short``)."""
    label_notes: list[str] = dataclasses.field(default_factory=list)
    """What the label map did not do: entries that matched no recording, labels it left out."""
    hop: int | None = None
    """Samples between the starts of consecutive windows of a continuous recording."""
    contiguous: np.ndarray | None = None
    """(N,) bool: window i + 1 starts ``hop`` samples after window i in the same continuous signal
    (so window i's recording goes on past its end with window i + 1's samples); None: unknown."""
    overlap_rule: str | None = None
    """How the window overlap was chosen (``overlap="auto"`` says why)."""

    def __len__(self) -> int:
        return int(self.labels.size)

    def subset(self, idx: np.ndarray) -> WindowSet:
        idx = np.asarray(idx)
        contiguous = None
        if self.contiguous is not None:  # still contiguous only when the next window was kept too
            follows = np.append(np.diff(idx) == 1, False) if idx.size else np.zeros(0, bool)
            contiguous = self.contiguous[idx] & follows
        return dataclasses.replace(self, windows=self.windows[idx], labels=self.labels[idx],
                                   groups=self.groups[idx], contiguous=contiguous)

    def recording_ids(self, idx: np.ndarray | None = None) -> list[str]:
        groups = self.groups if idx is None else self.groups[np.asarray(idx)]
        return [self.recordings[g]["id"] for g in np.unique(groups)]

    def summary(self) -> dict[str, Any]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {"n_windows": len(self), "n_recordings": int(np.unique(self.groups).size),
                "classes": list(self.classes), "windows_per_class": dict(zip(self.classes, counts.tolist())),
                "dropped": dict(self.dropped), "hop": self.hop, "overlap_rule": self.overlap_rule}


def parse_overlap(text: str | float) -> float | str:
    """``auto`` or a number in [0, 1) (the ``--overlap`` option)."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"overlap {text!r} must be 'auto' or a number in [0, 1)") from None
    window_hop(2, value)  # validates the range
    return value


def window_hop(window_samples: int, overlap: float) -> int:
    if not 0.0 <= overlap < 1.0:
        raise ConfigError(f"overlap={overlap!r} must be in [0, 1)")
    return max(1, int(round(window_samples * (1.0 - overlap))))


def auto_overlap(windows_per_class: dict[str, int]) -> tuple[float, str]:
    """(overlap, why) for ``overlap="auto"`` from each class's window count without overlap."""
    scarce = {c: n for c, n in windows_per_class.items() if n < AUTO_OVERLAP_MIN_WINDOWS}
    if scarce:
        listed = ", ".join(f"{c} {n}" for c, n in scarce.items())
        return AUTO_OVERLAP, (f"auto: {AUTO_OVERLAP:g}, since without overlap some class has fewer than "
                              f"{AUTO_OVERLAP_MIN_WINDOWS} windows ({listed})")
    return 0.0, f"auto: 0, every class has at least {AUTO_OVERLAP_MIN_WINDOWS} windows without overlap"


def cut_windows(signal: np.ndarray, window_samples: int, hop: int) -> np.ndarray:
    """(L,) -> (k, window_samples) windows starting every ``hop`` samples (k = 0 if too short)."""
    if signal.shape[-1] < window_samples:
        return np.empty((0, window_samples), dtype=np.float32)
    return sliding_window_view(signal, window_samples)[::hop]


def load_windows(path: str | Path, cfg: SpectrogramConfig | None = None, *, label_map: str | LabelMap | None = None,
                 overlap: float | str = 0.0, progress: Callable[[int, int], None] | None = None,
                 options: ReadOptions = DEFAULT_OPTIONS) -> WindowSet:
    """Read recordings, resample to cfg.fs, cut windows and map labels to classes.

    ``overlap="auto"`` chooses 0.5 when any class would have fewer than 100 windows without
    overlap, else 0 (``WindowSet.overlap_rule`` says which and why). ``options``: what the files may
    not say themselves (``--fs``, ``--channel``).
    """
    recordings = read_recordings(path, progress=progress, options=options)
    try:
        return windows_from_recordings(recordings, cfg, label_map=label_map, overlap=overlap)
    except InputError as exc:
        # Errors about the data as a whole (no windows, one class) must still name what was read.
        if str(path) in str(exc):
            raise
        raise InputError(f"{path}: {exc}") from None


def windows_from_recordings(recordings: list[Recording], cfg: SpectrogramConfig | None = None, *,
                            label_map: str | LabelMap | None = None, overlap: float | str = 0.0) -> WindowSet:
    cfg = cfg or SpectrogramConfig()
    if isinstance(label_map, str):
        label_map = LabelMap.parse(label_map)
    overlap = parse_overlap(overlap)
    if overlap != "auto":
        window_hop(cfg.window_samples, overlap)
    dropped = {"unmapped": 0, "too_short": 0}

    mapped: list[tuple[Recording, str]] = []
    for rec in recordings:
        cls_name = label_map(rec.label) if label_map else rec.label
        if cls_name is None:
            dropped["unmapped"] += 1
            continue
        mapped.append((rec, cls_name))
    if label_map:
        classes = label_map.classes
    else:
        order = next((r.meta["class_order"] for r, _ in mapped if "class_order" in r.meta), None)
        seen = {c for _, c in mapped}
        classes = [c for c in order if c in seen] if order else sorted(seen)
        classes += sorted(seen - set(classes))
    per_class = {c: sum(1 for _, k in mapped if k == c) for c in classes}
    labels_read = sorted({str(r.label) for r in recordings if r.label is not None})
    present = f"labels present: {', '.join(labels_read) or 'none'}"
    notes = []
    if label_map:
        unused = label_map.unused(r.label for r in recordings)
        if unused:
            notes.append(f"label map entr{'y' if len(unused) == 1 else 'ies'} {', '.join(unused)} matched no "
                         f"recording ({present})")
        left_out = sorted({str(r.label) for r in recordings if label_map(r.label) is None})
        if left_out:
            notes.append(f"left out {dropped['unmapped']} recording(s) whose label the map does not name: "
                         f"{', '.join(left_out)}")

    signals = []
    for rec, _ in mapped:
        try:
            signals.append(resample_to(rec.signal, rec.fs, cfg.fs))
        except InputError as exc:
            raise InputError(f"{rec.source}: recording {rec.id}: {exc}") from None
    if overlap == "auto":
        counts = dict.fromkeys(classes, 0)
        for (_, cls_name), signal in zip(mapped, signals):
            counts[cls_name] += sum(len(w) for w in _cut(signal, per_class[cls_name], cfg.window_samples,
                                                         cfg.window_samples))
        overlap, rule = auto_overlap(counts)
    else:
        rule = f"{overlap:g}, as given"
    hop = window_hop(cfg.window_samples, overlap)

    windows, labels, groups, rec_info, contiguous = [], [], [], [], []
    for (rec, cls_name), signal in zip(mapped, signals):
        cut = _cut(signal, per_class[cls_name], cfg.window_samples, hop)
        if sum(len(c) for c in cut) == 0:
            dropped["too_short"] += 1
            continue
        for seg, win in enumerate(cut):
            if len(win) == 0:
                continue
            # consecutive windows of one 1-D piece follow each other by hop samples (rows of a
            # pre-cut 2-D recording do not continue one another)
            follows = np.arange(len(win)) < len(win) - 1
            if signal.ndim == 2:
                per_row = (signal.shape[1] - cfg.window_samples) // hop + 1
                follows &= (np.arange(len(win)) % per_row) < per_row - 1
            contiguous.append(follows)
            rid = rec.id if len(cut) == 1 else f"{rec.id}#seg{seg}"
            info = {"id": rid, "label": rec.label, "class": cls_name, "source": rec.source, "fs": rec.fs,
                    "n_windows": int(len(win)),
                    **{k: v for k, v in rec.meta.items() if k not in ("class_order", "label_from")}}
            if len(cut) > 1:
                info["segment"] = seg
            groups.append(np.full(len(win), len(rec_info), dtype=np.int64))
            rec_info.append(info)
            windows.append(np.asarray(win, dtype=np.float32))
            labels.append(np.full(len(win), classes.index(cls_name), dtype=np.int64))
    if not windows:
        raise InputError(f"no windows of {cfg.window_samples} samples: {dropped['unmapped']} recordings "
                         f"unmapped by the label map, {dropped['too_short']} shorter than one window "
                         f"({present})")
    with_windows = sorted(set(np.concatenate(labels).tolist()))
    empty = [c for i, c in enumerate(classes) if i not in with_windows]
    if empty and label_map:
        unused = label_map.unused(r.label for r in recordings)
        raise InputError(f"class(es) {empty} have no windows; check the label map {label_map} "
                         f"({present}" + (f"; entries matching none: {', '.join(unused)})" if unused else ")"))
    if len(with_windows) < 2:
        raise InputError(f"only one class ({classes[with_windows[0]]!r}) has windows; need at least two "
                         f"(check the label map; {present})")
    return WindowSet(windows=np.concatenate(windows), labels=np.concatenate(labels),
                     groups=np.concatenate(groups), classes=classes, recordings=rec_info, dropped=dropped,
                     hop=hop, contiguous=np.concatenate(contiguous), overlap_rule=rule, label_notes=notes)


def _cut(signal: np.ndarray, recordings_of_class: int, window_samples: int, hop: int) -> list[np.ndarray]:
    """A recording's windows, as one piece or (single-recording class) several time segments."""
    if signal.ndim == 2:  # pre-cut windows: each row must hold at least one window
        return [np.concatenate([cut_windows(row, window_samples, hop) for row in signal])]
    if recordings_of_class == 1 and signal.size >= 2 * window_samples:
        n_segments = min(SINGLE_RECORDING_SEGMENTS, signal.size // window_samples)
        return [cut_windows(p, window_samples, hop) for p in np.array_split(signal, n_segments)]
    return [cut_windows(signal, window_samples, hop)]


# --- splits ------------------------------------------------------------------------------------------
def parse_where(text: str | None) -> dict[str, str] | None:
    """``load_hp=1`` -> {"load_hp": "1"}; several with commas."""
    if not text:
        return None
    out = {}
    for part in text.split(","):
        if part.count("=") != 1:
            raise ConfigError(f"test selection {part!r} must look like key=value (e.g. load_hp=1)")
        key, value = (s.strip() for s in part.split("="))
        out[key] = value
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def same_value(have: Any, want: Any) -> bool:
    """Metadata ``have`` equals a ``--test-where`` value: as numbers when both are (200 == 200.0),
    else as text."""
    a, b = _number(have), _number(want)
    if a is not None and b is not None:
        return a == b
    return str(have).strip() == str(want).strip()


def values_present(values: Any) -> list[str]:
    """Distinct metadata values, as a user would type them (200.0 -> '200'), numbers in order first."""
    numbers, texts = set(), set()
    for value in values:
        number = _number(value)
        if number is not None:
            numbers.add(number)
        elif value is not None:
            texts.add(str(value))
    return [str(int(n)) if n.is_integer() and abs(n) < 1e15 else repr(n) for n in sorted(numbers)] + sorted(texts)


def split_by_recording(ws: WindowSet, *, test_fraction: float = 0.25, seed: int = 0,
                       where: dict[str, Any] | None = None, subset: np.ndarray | None = None,
                       by: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Window indices (train, test), every recording wholly on one side.

    With ``where`` the test side is the recordings whose metadata match every key (leave-one-load-out);
    otherwise a seeded draw of about ``test_fraction`` of each class's recordings (at least one when
    the class has two or more). With ``by`` (a metadata key such as ``machine``) the draw is of the
    groups of recordings sharing its value instead, stratified by the classes a group holds, so all
    of a machine's recordings fall on one side. ``subset`` restricts the split to those window
    indices (used for a validation split inside the training side).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction={test_fraction!r} must be in (0, 1)")
    idx = np.arange(len(ws)) if subset is None else np.asarray(subset)
    rec_ids = np.unique(ws.groups[idx])
    if where:
        unknown = [k for k in where if not any(k in ws.recordings[r] for r in rec_ids)]
        if unknown:
            raise ConfigError(f"no recording has metadata {unknown}; known keys: "
                              f"{sorted(set().union(*(ws.recordings[r].keys() for r in rec_ids)))}")
        test_recs = [r for r in rec_ids
                     if all(same_value(ws.recordings[r].get(k), v) for k, v in where.items())]
        if not test_recs or len(test_recs) == len(rec_ids):
            present = "; ".join(f"{k}: {', '.join(values_present(ws.recordings[r].get(k) for r in rec_ids))}"
                                for k in where)
            raise ConfigError(f"test selection {where} matches {len(test_recs)} of {len(rec_ids)} "
                              f"recordings; it must leave some on each side (values present: {present})")
    elif by:
        test_recs = _draw_groups(ws, rec_ids, by, test_fraction, seed)
    else:
        rng = np.random.default_rng(seed)
        test_recs = []
        for cls_name in ws.classes:
            members = np.array([r for r in rec_ids if ws.recordings[r]["class"] == cls_name])
            if members.size < 2:
                continue
            rng.shuffle(members)
            n_test = min(members.size - 1, max(1, int(round(test_fraction * members.size))))
            test_recs.extend(members[:n_test].tolist())
    in_test = np.isin(ws.groups[idx], test_recs)
    return idx[~in_test], idx[in_test]


def has_metadata(ws: WindowSet, key: str) -> bool:
    """True when every recording carries metadata ``key`` (e.g. ``machine`` in synthetic data)."""
    return bool(ws.recordings) and all(r.get(key) is not None for r in ws.recordings)


def _draw_groups(ws: WindowSet, rec_ids: np.ndarray, by: str, test_fraction: float, seed: int) -> list[int]:
    """Recordings of about ``test_fraction`` of the ``by`` groups, drawn within each class make-up."""
    missing = [ws.recordings[r]["id"] for r in rec_ids if ws.recordings[r].get(by) is None]
    if missing:
        raise ConfigError(f"cannot split by {by!r}: {len(missing)} recording(s) have no such metadata "
                          f"(e.g. {missing[0]})")
    groups: dict[str, list[int]] = {}
    for r in rec_ids:
        groups.setdefault(str(ws.recordings[r][by]), []).append(int(r))
    strata: dict[tuple[str, ...], list[str]] = {}
    for name, members in groups.items():
        make_up = tuple(sorted({ws.recordings[r]["class"] for r in members}))
        strata.setdefault(make_up, []).append(name)
    rng = np.random.default_rng(seed)
    test_recs: list[int] = []
    for make_up in sorted(strata):
        names = np.array(sorted(strata[make_up]))
        if names.size < 2:
            continue
        rng.shuffle(names)
        n_test = min(names.size - 1, max(1, int(round(test_fraction * names.size))))
        test_recs.extend(r for name in names[:n_test] for r in groups[name])
    return test_recs
