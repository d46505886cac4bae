"""train_run and `edgecnn train`: a tiny run writes every artefact, reloads, and keeps its promises."""

import json

import numpy as np
import pytest

from edgecnn import dsp, rundir, synth
from edgecnn.cli import main as cli_main
from edgecnn.dataset import load_windows
from edgecnn.errors import ConfigError
from edgecnn.feature_cache import cache_key, normalise, raw_features
from edgecnn.fit import class_weight_vector
from edgecnn.train import default_config, stratified_sample, train_run
from tests.util import deterministic_training

ARTEFACTS = ("model.keras", "config.json", "calibration.npz", "split.json", "history.json", "metrics.json",
             "training_curves.png", "confusion_matrix.png", "example_spectrograms.png", "test_prediction.png")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    data_path = synth.write_pickle(folder / "tiny.pkl", synth.generate(n=96, seed=3, n_recordings=8))
    ws = load_windows(data_path, default_config("edge"))
    deterministic_training(0)
    result = train_run(ws, default_config("edge"), out=folder / "run", arch="edge", epochs=2, batch_size=16,
                       quiet=True, cache_dir=folder / "cache", data_source=str(data_path))
    return {"folder": folder, "data": data_path, "ws": ws, "result": result, "run": folder / "run"}


def test_tiny_run_writes_every_artefact_and_the_model_reloads(tiny):
    import keras

    run = tiny["run"]
    assert sorted(p.name for p in run.iterdir()) == sorted(ARTEFACTS)
    info = rundir.read_run(run)
    assert info.classes == ["A", "B"] and info.config["arch"] == "edge"
    # the edge default: envelope image, log, level removed, one global normalisation pair
    assert (info.cfg.feature, info.cfg.transform, info.cfg.level) == ("envelope", "log", "column_mean")
    assert len(info.cfg.norm_mean) == len(info.cfg.norm_std) == 1 and info.cfg.is_normalised
    # The reloaded model on features computed the device's way (dsp.features with the stored config)
    # reproduces the test accuracy the run reported.
    ws = tiny["ws"]
    split = info.split()
    test_rows = np.isin([ws.recordings[g]["id"] for g in ws.groups], split["test"])
    model = keras.saving.load_model(info.model_path)
    probs = model.predict(dsp.features(ws.windows[test_rows], info.cfg), verbose=0)
    metrics = json.loads((run / "metrics.json").read_text())
    accuracy = float(np.mean(probs.argmax(axis=1) == ws.labels[test_rows]))
    assert accuracy == pytest.approx(metrics["test"]["accuracy"], abs=1e-9)
    assert metrics["test"]["n"] == int(test_rows.sum())
    assert {r["recording"] for r in metrics["test"]["per_recording"]} == set(split["test"])
    assert np.asarray(metrics["test"]["confusion_matrix"]).sum() == int(test_rows.sum())
    history = json.loads((run / "history.json").read_text())
    assert len(history["loss"]) == 2 and len(history["val_loss"]) == 2 and history["best_epoch"] in (1, 2)


def test_split_is_by_recording_and_calibration_holds_training_windows_only(tiny):
    ws, info = tiny["ws"], rundir.read_run(tiny["run"])
    split = info.split()
    sides = [set(split["train"]), set(split["validation"]), set(split["test"])]
    assert all(sides) and not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert set().union(*sides) == {r["id"] for r in ws.recordings}
    windows, labels = info.calibration()
    assert windows.dtype == np.float32 and len(windows) == len(labels) > 0
    training = np.isin([ws.recordings[g]["id"] for g in ws.groups], split["train"] + split["validation"])
    rows = {w.tobytes(): lab for w, lab in zip(ws.windows[training], ws.labels[training])}
    assert all(rows.get(w.tobytes()) == lab for w, lab in zip(windows, labels))
    assert set(labels.tolist()) == {0, 1}


def test_normalisation_comes_from_the_training_split_alone(tiny):
    ws, info = tiny["ws"], rundir.read_run(tiny["run"])
    split = info.split()
    training = np.isin([ws.recordings[g]["id"] for g in ws.groups], split["train"] + split["validation"])
    raw = dsp.features(ws.windows, default_config("edge"), normalise=False)
    mean, std = dsp.fit_normalisation(raw[training], per_bin=False)  # envelope images: one global pair
    np.testing.assert_allclose(info.cfg.norm_mean, mean, rtol=1e-6)
    np.testing.assert_allclose(info.cfg.norm_std, std, rtol=1e-6)
    # (the mean of a level-removed image is 0 up to rounding: the spread tells the two fits apart)
    _, everything = dsp.fit_normalisation(raw, per_bin=False)
    assert not np.allclose(info.cfg.norm_std, everything, rtol=1e-3)


def test_overwriting_a_run_is_refused_unless_forced(tiny, capsys):
    run = tiny["run"]
    before = (run / "model.keras").read_bytes()
    with pytest.raises(ConfigError, match="already exists; choose another folder or pass --force"):
        train_run(tiny["ws"], out=run, epochs=1, quiet=True)
    code = cli_main(["train", "--data", str(tiny["data"]), "--epochs", "1", "--quiet", "--out", str(run)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "already exists" in err
    assert (run / "model.keras").read_bytes() == before
    # --force replaces it with a complete new run and leaves no temporary folders behind.
    assert cli_main(["train", "--data", str(tiny["data"]), "--epochs", "1", "--arch", "edge", "--quiet",
                     "--cache-dir", str(tiny["folder"] / "cache"), "--force", "--out", str(run)]) == 0
    assert sorted(p.name for p in run.iterdir()) == sorted(ARTEFACTS)
    assert len(json.loads((run / "history.json").read_text())["loss"]) == 1
    assert [p.name for p in run.parent.iterdir() if p.name.startswith(".")] == []


def test_cached_spectrograms_normalise_to_the_device_features(tiny, tmp_path):
    ws, info = tiny["ws"], rundir.read_run(tiny["run"])
    windows = ws.windows[:10]
    raw, hit = raw_features(windows, info.cfg, cache_dir=tmp_path)
    assert not hit and len(list(tmp_path.glob("*.npy"))) == 1
    again, hit = raw_features(windows, info.cfg, cache_dir=tmp_path)
    assert hit and np.array_equal(raw, again)
    np.testing.assert_allclose(normalise(raw, info.cfg), dsp.features(windows, info.cfg), rtol=1e-5, atol=1e-5)
    # the key follows the data and the DSP settings, not the normalisation
    assert cache_key(windows, info.cfg) == cache_key(windows, default_config("edge"))
    assert cache_key(windows, info.cfg) != cache_key(windows[:9], info.cfg)
    assert cache_key(windows, info.cfg) != cache_key(windows, default_config("seed"))


def test_class_weights_balance_unbalanced_labels():
    weights = class_weight_vector(np.array([0] * 30 + [1] * 10), 3)
    np.testing.assert_allclose(weights, [40 / 90, 40 / 30, 1.0])
    assert weights[0] * 30 == pytest.approx(weights[1] * 10)


def test_stratified_sample_keeps_every_class():
    labels = np.array([0] * 990 + [1] * 10)
    picked = stratified_sample(labels, 200, seed=0)
    assert len(picked) <= 200 and set(labels[picked]) == {0, 1}
    assert np.array_equal(stratified_sample(labels[:50], 200, seed=0), np.arange(50))


def test_bad_training_options_are_one_line_errors(tiny, tmp_path):
    with pytest.raises(ConfigError, match="strategy='ring' must be one of"):
        train_run(tiny["ws"], out=tmp_path / "x", strategy="ring", quiet=True)
    with pytest.raises(ConfigError, match="epochs=0 must be an integer >= 1"):
        train_run(tiny["ws"], out=tmp_path / "x", epochs=0, quiet=True)
    assert not (tmp_path / "x").exists()


def test_multiworker_without_tf_config_says_how_to_configure_it(tiny, tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="strategy 'multiworker' needs TF_CONFIG"):
        train_run(tiny["ws"], out=tmp_path / "x", strategy="multiworker", epochs=1, quiet=True,
                  cache_dir=tiny["folder"] / "cache")
    assert not (tmp_path / "x").exists()


def test_validation_split_falls_back_to_time_when_classes_have_few_recordings():
    from edgecnn.dataset import WindowSet
    from edgecnn.train import validation_split

    # 2 recordings per class, 20 windows each cut with overlap 0.5 (neighbours share half their samples)
    groups = np.repeat(np.arange(4), 20)
    ws = WindowSet(windows=np.zeros((80, 8), np.float32), labels=np.repeat([0, 0, 1, 1], 20), groups=groups,
                   classes=["A", "B"], recordings=[{"id": f"r{i}", "class": "AABB"[i]} for i in range(4)])
    train_idx = np.arange(80)
    fit_idx, val_idx, rule = validation_split(ws, train_idx, val_fraction=0.2, seed=0, overlap=0.5)
    assert rule.startswith("last 20% of each training recording")
    for g in range(4):
        fit_g, val_g = fit_idx[groups[fit_idx] == g], val_idx[groups[val_idx] == g]
        assert len(val_g) == 4 and val_g.min() - fit_g.max() == 2  # one shared-sample window dropped
    # the WindowSet's own hop wins: 8-sample windows every 2 samples share samples with 3 neighbours
    ws.hop = 2
    fit_idx, val_idx, _ = validation_split(ws, train_idx, val_fraction=0.2, seed=0)
    assert val_idx[groups[val_idx] == 0].min() - fit_idx[groups[fit_idx] == 0].max() == 4
    # with enough recordings per class the split stays by recording
    ws3 = WindowSet(windows=np.zeros((60, 8), np.float32), labels=np.repeat([0, 0, 0, 1, 1, 1], 10),
                    groups=np.repeat(np.arange(6), 10), classes=["A", "B"],
                    recordings=[{"id": f"r{i}", "class": "AAABBB"[i]} for i in range(6)])
    fit_idx, val_idx, rule = validation_split(ws3, np.arange(60), val_fraction=0.2, seed=0)
    assert rule == "by recording"
    assert not set(ws3.groups[fit_idx]) & set(ws3.groups[val_idx])
