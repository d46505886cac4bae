"""Epoch selection: a minimum number of epochs, and never a near-chance epoch restored (edgecnn.fit)."""

import numpy as np
import pytest

from edgecnn.errors import ConfigError
from edgecnn.fit import CHANCE_MARGIN, EpochSelector, FitOptions, balanced_accuracy, fit, predict


class _Weights:
    def __init__(self):
        self.value = None

    def set_weights(self, value):
        self.value = value


def test_balanced_accuracy_is_mean_recall_over_present_classes():
    assert balanced_accuracy([0, 0, 0, 1], [0, 0, 0, 0]) == pytest.approx(0.5)
    assert balanced_accuracy([0, 1, 1, 1], [0, 1, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)


def test_an_early_near_chance_epoch_is_never_kept_even_with_the_lowest_loss():
    sel = EpochSelector(y_val=np.array([0, 1]), patience=2, min_epochs=1)
    # epoch 1: lowest loss but chance; epoch 2: above chance + margin; epochs 3-4: worse loss
    stops = [sel.update(loss, bal, lambda e=e: f"w{e}")
             for e, (loss, bal) in enumerate([(0.1, 0.5), (0.4, 0.9), (0.6, 0.9), (0.7, 0.9)], 1)]
    assert stops == [False, False, False, True]
    model = _Weights()
    epoch, why = sel.finish(model)
    assert epoch == 2 and model.value == "w2" and "above chance" in why


def test_no_eligible_epoch_keeps_the_last_and_says_so():
    sel = EpochSelector(y_val=np.array([0, 1, 1]), patience=1, min_epochs=3)
    stops = [sel.update(loss, 0.5 + CHANCE_MARGIN, lambda: "w") for loss in (0.3, 0.2, 0.1)]
    assert stops == [False, False, True]  # min_epochs held stopping back until epoch 3
    model = _Weights()
    epoch, why = sel.finish(model)
    assert epoch == 3 and model.value is None and why.startswith("no epoch") and "last epoch" in why


def test_min_epochs_is_validated():
    with pytest.raises(ConfigError, match="min_epochs"):
        FitOptions(min_epochs=-1)


def _tiny_model(shape, n_classes):
    import keras

    return keras.Sequential([keras.Input(shape), keras.layers.Flatten(), keras.layers.Dense(8, activation="relu"),
                             keras.layers.Dense(n_classes, activation="softmax")])


def _blobs(n, seed):
    """Two classes of 6x6 images told apart by their mean level."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.normal(0.0, 1.0, (n, 6, 6, 1)).astype(np.float32) + (2.0 * y - 1.0)[:, None, None, None]
    return x, y


def test_real_training_on_an_uninformative_validation_side_keeps_the_last_epoch():
    x, y = _blobs(64, 0)
    # Identical validation images: every epoch predicts one class for all of them, balanced accuracy
    # is exactly chance, so no epoch may be restored (the lowest loss would otherwise pick one).
    x_val, y_val = np.zeros((8, 6, 6, 1), np.float32), np.arange(8) % 2
    options = FitOptions(epochs=5, batch_size=16, patience=1, min_epochs=4, quiet=True, seed=1)
    result = fit(lambda: _tiny_model((6, 6, 1), 2), x, y, x_val, y_val, n_classes=2, options=options)
    history = result.history
    assert len(history["loss"]) >= 4  # patience 1 could have stopped at epoch 2: min_epochs held it
    assert history["val_balanced_accuracy"] == [0.5] * len(history["loss"])
    assert result.best_epoch == len(history["loss"]) and result.selection.startswith("no epoch")


def test_real_training_on_separable_data_keeps_an_epoch_above_chance():
    x, y = _blobs(96, 2)
    x_val, y_val = _blobs(32, 3)
    options = FitOptions(epochs=6, batch_size=16, patience=2, min_epochs=3, quiet=True, seed=0)
    result = fit(lambda: _tiny_model((6, 6, 1), 2), x, y, x_val, y_val, n_classes=2, options=options)
    kept = result.best_epoch
    assert result.history["val_balanced_accuracy"][kept - 1] > 0.5 + CHANCE_MARGIN
    assert "lowest validation loss" in result.selection
    # the model holds the kept epoch's weights: its validation balanced accuracy is that epoch's
    score = balanced_accuracy(y_val, predict(result.model, x_val).argmax(axis=1))
    assert score == pytest.approx(result.history["val_balanced_accuracy"][kept - 1], abs=1e-9)
