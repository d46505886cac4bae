"""Augmentation of training windows: speed by resampling, offset, gain, noise (edgecnn.augment)."""

import json

import numpy as np
import pytest

from edgecnn import synth
from edgecnn.augment import SPEED_STEP, Augmentation, augment_training, augment_windows, change_speed
from edgecnn.config import SpectrogramConfig
from edgecnn.dataset import windows_from_recordings
from edgecnn.errors import ConfigError
from edgecnn.readers import Recording

FS = 12800.0
N = 10000
BIN_HZ = FS / N


def _peak_hz(x):
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1 / FS)[np.argmax(spec)])


def _tone(f, samples, phase=0.3):
    return np.sin(2 * np.pi * f * np.arange(samples) / FS + phase).astype(np.float32)


@pytest.mark.parametrize("speed", [0.03, -0.03, 0.01])
def test_a_speed_change_moves_a_tone_by_the_same_fraction(speed):
    f = 1234.5
    k = int(round(speed / SPEED_STEP))
    out = change_speed(_tone(f, 2 * N)[None, :], k, N)
    assert out.shape == (1, N)
    assert abs(_peak_hz(out[0]) - f * (1 + speed)) <= BIN_HZ
    assert abs(_peak_hz(_tone(f, N)) - f) <= BIN_HZ  # the measurement itself


def _tone_windows(f, n_recordings=4, windows_each=6, overlap=0.0):
    recs = [Recording(signal=_tone(f, windows_each * N, phase=i), fs=FS, label=lab, id=f"{lab}{i}",
                      source="memory")
            for i, lab in enumerate(["a", "b"] * (n_recordings // 2))]
    return windows_from_recordings(recs, SpectrogramConfig(), overlap=overlap)


def test_speed_ups_take_their_extra_samples_from_the_following_windows():
    f = 1500.0
    ws = _tone_windows(f)
    aug = Augmentation(copies=4, gain_db=0.0, snr_db=(120.0, 120.0))
    out, origin = augment_windows(ws.windows, ws.contiguous, ws.hop, aug, seed=0)
    peaks = np.array([_peak_hz(w) for w in out])
    assert np.all(peaks >= f * 0.97 - BIN_HZ) and np.all(peaks <= f * 1.03 + BIN_HZ)
    assert (peaks > f * 1.01).sum() > 0 and (peaks < f * 0.99).sum() > 0
    # the last window of each recording has nothing after it: slow-downs only there
    last = ~ws.contiguous[origin]
    assert np.all(peaks[last] <= f + BIN_HZ)


def test_pre_cut_rows_without_continuation_only_slow_down():
    f = 900.0
    rows = np.stack([_tone(f, N, phase=p) for p in range(6)])
    aug = Augmentation(copies=3, gain_db=0.0, snr_db=(120.0, 120.0))
    out, _ = augment_windows(rows, None, N, aug, seed=1)
    peaks = np.array([_peak_hz(w) for w in out])
    assert np.all(peaks <= f + BIN_HZ) and np.all(peaks >= f * 0.97 - BIN_HZ)


def test_gain_and_noise_within_their_ranges():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(40, N)).astype(np.float32)
    # gain only (no speed change, no offset, negligible noise): each copy is its window scaled
    aug = Augmentation(copies=2, speed=0.0, offset=False, gain_db=6.0, snr_db=(150.0, 150.0))
    out, origin = augment_windows(rows, None, N, aug, seed=3)
    ratio_db = 20 * np.log10(np.std(out, axis=1) / np.std(rows[origin], axis=1))
    assert np.all(np.abs(ratio_db) <= 6.0 + 1e-3) and ratio_db.std() > 1.0
    corr = [np.corrcoef(o, rows[i])[0, 1] for o, i in zip(out, origin)]
    assert min(corr) > 0.999999
    # noise only: the residual's power against the window's gives the drawn SNR (15-40 dB)
    aug = Augmentation(copies=2, speed=0.0, offset=False, gain_db=0.0, snr_db=(15.0, 40.0))
    out, origin = augment_windows(rows, None, N, aug, seed=3)
    snr = 10 * np.log10(np.mean(rows[origin] ** 2, axis=1) / np.mean((out - rows[origin]) ** 2, axis=1))
    assert snr.min() >= 15.0 - 0.5 and snr.max() <= 40.0 + 0.5 and snr.max() - snr.min() > 10.0


def test_deterministic_for_a_seed():
    ws = _tone_windows(700.0, overlap=0.5)
    aug = Augmentation()
    a, oa = augment_windows(ws.windows, ws.contiguous, ws.hop, aug, seed=5)
    b, ob = augment_windows(ws.windows, ws.contiguous, ws.hop, aug, seed=5)
    c, _ = augment_windows(ws.windows, ws.contiguous, ws.hop, aug, seed=6)
    assert np.array_equal(a, b) and np.array_equal(oa, ob) and not np.array_equal(a, c)
    assert a.shape == (2 * len(ws), N) and a.dtype == np.float32


def test_copies_keep_labels_and_recordings_and_never_use_held_out_samples():
    ws = _tone_windows(1100.0, n_recordings=4, windows_each=5)
    train = np.flatnonzero(np.isin(ws.groups, [0, 1]))[:-1]  # the last window of recording 1 held out
    out, origin = augment_training(ws, train, Augmentation(copies=3), seed=0)
    assert len(out) == 3 * len(train) and set(origin.tolist()) == set(train.tolist())
    assert np.bincount(ws.labels[origin]).tolist() == (3 * np.bincount(ws.labels[train])).tolist()
    assert np.array_equal(np.sort(ws.groups[origin]), np.sort(np.repeat(ws.groups[train], 3)))
    # the window before the held-out one must not continue into it: slow-downs only
    before = train[-1]
    rows = origin == before
    peaks = np.array([_peak_hz(w) for w in out[rows]])
    assert np.all(peaks <= 1100.0 + BIN_HZ)


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="copies"):
        Augmentation(copies=-1)
    with pytest.raises(ConfigError, match="snr_db"):
        Augmentation(snr_db=(30.0, 10.0))


def test_training_augments_only_the_training_side_and_records_it(tmp_path):
    from edgecnn import dsp, rundir
    from edgecnn.dataset import load_windows
    from edgecnn.fit import predict
    from edgecnn.train import default_config, train_run

    data = synth.write_pickle(tmp_path / "d.pkl", synth.generate(n=64, seed=4, n_recordings=8))
    cfg = default_config("edge")
    ws = load_windows(data, cfg)
    result = train_run(ws, cfg, out=tmp_path / "run", epochs=1, min_epochs=1, batch_size=16, quiet=True,
                       use_cache=False, augmentation=Augmentation(copies=2))
    info = rundir.read_run(tmp_path / "run")
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    training = info.config["training"]
    assert training["augmentation"]["copies"] == 2
    assert training["windows_trained_on"] == 3 * split["windows"]["train"]
    # evaluation is on the plain held-out windows: their count, and the model's accuracy on them
    test_rows = np.isin([ws.recordings[g]["id"] for g in ws.groups], split["test"])
    assert result.metrics["test"]["n"] == split["windows"]["test"] == int(test_rows.sum())
    probs = predict(result.model, dsp.features(ws.windows[test_rows], info.cfg))
    assert np.mean(probs.argmax(axis=1) == ws.labels[test_rows]) == pytest.approx(
        result.metrics["test"]["accuracy"], abs=1e-9)
