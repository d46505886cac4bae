import numpy as np
import pytest

from edgecnn import synth
from edgecnn.config import SpectrogramConfig
from edgecnn.dataset import (
    LabelMap,
    load_windows,
    resample_ratio,
    resample_to,
    split_by_recording,
    windows_from_recordings,
)
from edgecnn.errors import ConfigError, InputError
from edgecnn.readers import Recording


def test_resampling_12000_to_12800_keeps_a_tone_at_its_frequency():
    assert resample_ratio(12000, 12800) == (16, 15)
    assert resample_ratio(48828, 12800) == (3200, 12207)
    t = np.arange(24000) / 12000.0
    y = resample_to(np.sin(2 * np.pi * 1000.0 * t), 12000, 12800)
    assert y.size == 25600
    spec = np.abs(np.fft.rfft(y[1000:-1000] * np.hanning(y.size - 2000)))
    freqs = np.fft.rfftfreq(y.size - 2000, 1 / 12800)
    assert abs(freqs[np.argmax(spec)] - 1000.0) < 1.0
    # amplitude preserved away from the edges
    assert np.abs(y[2000:-2000]).max() == pytest.approx(1.0, abs=0.01)


def test_rate_that_cannot_be_resampled_exactly():
    with pytest.raises(InputError, match=r"sample rate 12345.678901 Hz cannot be resampled exactly to 12800"):
        resample_to(np.zeros(100), 12345.678901, 12800.0)


def _recs(n_per_class=3, length=40000, classes=("normal", "inner"), fs=12800.0):
    rng = np.random.default_rng(0)
    return [Recording(signal=rng.normal(size=length).astype(np.float32), fs=fs, label=c, id=f"{c}{i}",
                      source="mem", meta={"load": i % 2}) for c in classes for i in range(n_per_class)]


def test_windows_never_cross_the_split():
    ws = windows_from_recordings(_recs(4), overlap=0.5)
    assert ws.windows.shape[1] == 10000 and len(ws) == 8 * 7
    for seed in range(5):
        train, test = split_by_recording(ws, test_fraction=0.25, seed=seed)
        assert set(ws.groups[train]).isdisjoint(ws.groups[test])
        assert len(train) + len(test) == len(ws)
        # stratified: both classes on both sides
        assert set(ws.labels[test]) == {0, 1} and set(ws.labels[train]) == {0, 1}
    a = split_by_recording(ws, seed=3)
    b = split_by_recording(ws, seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    train, test = split_by_recording(ws, where={"load": 1})
    assert {ws.recordings[g]["load"] for g in ws.groups[test]} == {1}
    assert {ws.recordings[g]["load"] for g in ws.groups[train]} == {0}
    inner_train, val = split_by_recording(ws, subset=train, seed=0)
    assert set(inner_train) | set(val) == set(train)


def test_synth_pickle_groups_and_windows(tmp_path):
    path = synth.write_pickle(tmp_path / "d.pkl", synth.generate(n=24, seed=0, n_recordings=6))
    ws = load_windows(path)
    assert ws.classes == ["A", "B"] and len(ws) == 24 and len(ws.recordings) == 6
    train, test = split_by_recording(ws, seed=0)
    assert set(ws.groups[train]).isdisjoint(ws.groups[test])


def test_label_map_and_dropped_recordings():
    recs = _recs(2, classes=("normal", "inner_race", "outer_race", "ball"))
    ws = windows_from_recordings(recs, label_map="normal=A,*_race=B")
    assert ws.classes == ["A", "B"] and ws.dropped["unmapped"] == 2
    assert {ws.recordings[g]["label"] for g in ws.groups[ws.labels == 1]} == {"inner_race", "outer_race"}
    four = windows_from_recordings(recs)
    assert four.classes == ["ball", "inner_race", "normal", "outer_race"]
    assert str(LabelMap.parse(" normal = A , *=B")) == "normal=A,*=B"


def test_single_recording_class_is_cut_in_time_without_straddling():
    recs = _recs(1, length=45000, classes=("normal",)) + _recs(3, classes=("fault",))
    ws = windows_from_recordings(recs, overlap=0.5)
    normal = [r for r in ws.recordings if r["class"] == "normal"]
    assert len(normal) == 4 and all("#seg" in r["id"] for r in normal)
    # every window of a segment lies inside that segment's samples
    full = recs[0].signal
    seg_bounds = np.cumsum([0] + [len(p) for p in np.array_split(full, 4)])
    for g in np.unique(ws.groups[ws.labels == ws.classes.index("normal")]):
        seg = ws.recordings[g]["segment"]
        lo, hi = seg_bounds[seg], seg_bounds[seg + 1]
        for w in ws.windows[ws.groups == g]:
            start = int(np.flatnonzero(np.isclose(full, w[0]))[0])
            assert lo <= start and start + 10000 <= hi
    train, test = split_by_recording(ws, seed=1)
    assert ws.classes.index("normal") in set(ws.labels[test])


def test_dataset_errors():
    with pytest.raises(ConfigError, match=r"label map entry 'normal' must look like label=CLASS"):
        LabelMap.parse("normal")
    with pytest.raises(InputError, match=r"class\(es\) \['B'\] have no windows"):
        windows_from_recordings(_recs(2), label_map="normal=A,nothing=B")
    with pytest.raises(InputError, match=r"only one class \('normal'\) has windows"):
        windows_from_recordings(_recs(2, classes=("normal",)))
    with pytest.raises(InputError, match=r"no windows of 10000 samples: 0 recordings unmapped by the label map, "
                                         r"6 shorter than one window"):
        windows_from_recordings(_recs(3, length=5000))
    ws = windows_from_recordings(_recs(2))
    with pytest.raises(ConfigError, match=r"test selection \{'load': 5\} matches 0 of 4 recordings"):
        split_by_recording(ws, where={"load": 5})
    with pytest.raises(ConfigError, match=r"no recording has metadata \['rpm'\]"):
        split_by_recording(ws, where={"rpm": 1})
    with pytest.raises(ConfigError, match=r"overlap=1.0 must be in \[0, 1\)"):
        windows_from_recordings(_recs(2), overlap=1.0)
    cfg = SpectrogramConfig(window_samples=20000)
    assert windows_from_recordings(_recs(2), cfg).windows.shape[1] == 20000


def _loads(values):
    """Recordings whose metadata load_lb holds ``values`` in turn (as npz files store them: numbers)."""
    rng = np.random.default_rng(1)
    return [Recording(signal=rng.normal(size=20000).astype(np.float32), fs=12800.0, label=c, id=f"{c}{i}",
                      source="mem", meta={"load_lb": np.float64(v)})
            for c in ("normal", "inner") for i, v in enumerate(values)]


def test_test_where_compares_numbers_as_numbers_and_lists_the_values_present():
    from edgecnn.dataset import parse_where

    ws = windows_from_recordings(_loads([0.0, 200.0, 400.0]))
    for typed in ("load_lb=200", "load_lb=200.0", "load_lb=2e2"):
        train, test = split_by_recording(ws, where=parse_where(typed))
        assert {float(ws.recordings[g]["load_lb"]) for g in ws.groups[test]} == {200.0}, typed
        assert 200.0 not in {float(ws.recordings[g]["load_lb"]) for g in ws.groups[train]}
    with pytest.raises(ConfigError, match=r"test selection \{'load_lb': '250'\} matches 0 of 6 recordings; it must "
                                          r"leave some on each side \(values present: load_lb: 0, 200, 400\)"):
        split_by_recording(ws, where=parse_where("load_lb=250"))
    text = windows_from_recordings([Recording(signal=r.signal, fs=r.fs, label=r.label, id=r.id, source="mem",
                                              meta={"site": "pump" if i % 2 else "fan"})
                                    for i, r in enumerate(_loads([0, 1]))])
    _, test = split_by_recording(text, where={"site": "fan"})
    assert {text.recordings[g]["site"] for g in text.groups[test]} == {"fan"}


def test_label_map_reports_entries_that_match_nothing_and_lists_the_labels():
    recs = _recs(2, classes=("normal", "inner_race", "outer_race"))
    ws = windows_from_recordings(recs, label_map="normal=A,inner_race=B,outr_race=B")  # a typo
    assert ws.classes == ["A", "B"]
    assert ws.label_notes == [
        "label map entry outr_race=B matched no recording (labels present: inner_race, normal, outer_race)",
        "left out 2 recording(s) whose label the map does not name: outer_race"]
    assert windows_from_recordings(recs, label_map="normal=A,*=B").label_notes == []
    with pytest.raises(InputError, match=r"class\(es\) \['B'\] have no windows; check the label map normal=A,"
                                         r"inner=B \(labels present: inner_race, normal, outer_race; entries "
                                         r"matching none: inner=B\)"):
        windows_from_recordings(recs, label_map="normal=A,inner=B")


def test_train_cli_prints_the_label_map_notes_even_when_quiet(tmp_path):
    from tests.util import run_cli

    for i, label in enumerate(("normal", "normal", "inner", "inner", "ball")):
        np.savez(tmp_path / f"r{i}.npz", signal=np.random.default_rng(i).normal(size=30000), fs=12800.0,
                 label=label)
    proc = run_cli("train", "--data", str(tmp_path), "--label-map", "normal=A,inner=B,balll=B", "--epochs", "1",
                   "--quiet", "--out", str(tmp_path / "run"))
    assert proc.returncode == 0, proc.stderr
    # (then, on this 1-epoch toy, the degenerate-model guard's warning)
    assert proc.stderr.splitlines()[:2] == [
        "edgecnn train: note: label map entry balll=B matched no recording (labels present: ball, inner, normal)",
        "edgecnn train: note: left out 1 recording(s) whose label the map does not name: ball"]
