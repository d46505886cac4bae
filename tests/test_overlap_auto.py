"""``--overlap auto``: overlapping windows only when some class is short of windows."""

import json

import numpy as np
import pytest

from edgecnn.config import SpectrogramConfig
from edgecnn.dataset import AUTO_OVERLAP_MIN_WINDOWS, parse_overlap, windows_from_recordings
from edgecnn.errors import ConfigError
from edgecnn.readers import Recording

CFG = SpectrogramConfig()
N = CFG.window_samples


def _recordings(windows_a: int, windows_b: int, per_class: int = 3):
    """``per_class`` recordings per class, each long enough for the given windows at no overlap."""
    rng = np.random.default_rng(0)
    out = []
    for label, total in (("a", windows_a), ("b", windows_b)):
        for i, k in enumerate(np.array_split(np.ones(total, int), per_class)):
            out.append(Recording(signal=rng.normal(size=len(k) * N + N // 3).astype(np.float32), fs=CFG.fs,
                                 label=label, id=f"{label}{i}", source="memory"))
    return out


def test_auto_overlaps_when_a_class_has_fewer_than_100_windows():
    ws = windows_from_recordings(_recordings(AUTO_OVERLAP_MIN_WINDOWS + 20, AUTO_OVERLAP_MIN_WINDOWS - 10), CFG,
                                 overlap="auto")
    assert ws.hop == N // 2
    assert "0.5" in ws.overlap_rule and f"b {AUTO_OVERLAP_MIN_WINDOWS - 10}" in ws.overlap_rule
    # every recording of k windows without overlap gives 2k - 1 (plus one for the spare third) at 0.5
    counts = np.bincount(ws.labels)
    assert counts[1] >= 2 * (AUTO_OVERLAP_MIN_WINDOWS - 10) - 3
    assert ws.summary()["overlap_rule"] == ws.overlap_rule and ws.summary()["hop"] == N // 2


def test_auto_does_not_overlap_when_every_class_has_enough():
    ws = windows_from_recordings(_recordings(AUTO_OVERLAP_MIN_WINDOWS, AUTO_OVERLAP_MIN_WINDOWS + 5), CFG,
                                 overlap="auto")
    assert ws.hop == N and ws.overlap_rule.startswith("auto: 0")
    assert np.bincount(ws.labels).tolist() == [AUTO_OVERLAP_MIN_WINDOWS, AUTO_OVERLAP_MIN_WINDOWS + 5]


def test_contiguity_follows_the_recordings():
    ws = windows_from_recordings(_recordings(6, 6, per_class=2), CFG, overlap=0.5)
    for i in np.flatnonzero(ws.contiguous):  # window i + 1 is window i moved on by one hop
        np.testing.assert_array_equal(ws.windows[i, ws.hop:], ws.windows[i + 1, :N - ws.hop])
    last_of_each = [np.flatnonzero(ws.groups == g)[-1] for g in np.unique(ws.groups)]
    assert not ws.contiguous[last_of_each].any()
    assert ws.contiguous.sum() == len(ws) - len(last_of_each)
    sub = ws.subset(np.array([0, 1, 3]))
    assert sub.contiguous.tolist() == [True, False, False]


@pytest.mark.parametrize("text", ["1.0", "-0.1", "half"])
def test_bad_overlap_is_a_config_error(text):
    with pytest.raises(ConfigError, match="overlap"):
        parse_overlap(text)


def test_train_cli_prints_and_records_the_overlap_and_its_settings(tmp_path, capsys):
    from edgecnn import synth
    from edgecnn.cli import main

    # 4 recordings of 12 windows: 24 windows per class without overlap, so auto picks 0.5
    data = synth.write_pickle(tmp_path / "d.pkl", synth.generate(n=48, seed=2, n_recordings=4))
    rc = main(["train", "--data", str(data), "--epochs", "1", "--min-epochs", "1", "--augment", "0",
               "--out", str(tmp_path / "run"), "--no-cache"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "window overlap auto: 0.5" in out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["overlap_rule"].startswith("auto: 0.5")
    # the other small-data defaults given on the command line are recorded too
    assert config["training"]["min_epochs"] == 1 and config["training"]["augmentation"]["copies"] == 0
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["best_epoch"] == 1 and history["selection"]


def test_rows_of_pre_cut_recordings_never_continue_one_another():
    rng = np.random.default_rng(1)
    recs = [Recording(signal=rng.normal(size=(3, 2 * N + N // 2)).astype(np.float32), fs=CFG.fs, label=lab,
                      id=f"{lab}{i}", source="memory") for lab in ("a", "b") for i in range(2)]
    ws = windows_from_recordings(recs, CFG, overlap=0.0)
    assert len(ws) == 4 * 3 * 2  # two windows per row
    assert ws.contiguous.tolist() == [True, False] * 12
    # the first row's second window is its samples N..2N; the next row starts afresh
    np.testing.assert_array_equal(ws.windows[1], recs[0].signal[0, N:2 * N])
    np.testing.assert_array_equal(ws.windows[2], recs[0].signal[1, :N])
