import json

import numpy as np
import pytest

from edgecnn.config import FEATURE_VERSION, SpectrogramConfig
from edgecnn.errors import ConfigError


def test_defaults_give_scipy_layout_129_by_44():
    cfg = SpectrogramConfig()
    assert cfg.hop == 224
    assert cfg.n_freq == 129
    assert cfg.n_frames == 44
    assert cfg.input_shape == (129, 44, 1)
    assert cfg.frame_period_s == pytest.approx(224 / 12800)
    assert cfg.window_array.shape == (256,)
    assert not cfg.window_array.flags.writeable


@pytest.mark.parametrize("nperseg,noverlap,length", [(256, 32, 10000), (128, 64, 5000), (512, 0, 12800),
                                                     (64, 63, 1000)])
def test_frame_count_formula(nperseg, noverlap, length):
    cfg = SpectrogramConfig(nperseg=nperseg, noverlap=noverlap, window_samples=length)
    hop = nperseg - noverlap
    assert cfg.n_frames == 1 + (length - nperseg) // hop
    # brute force: count starts p*hop with p*hop + nperseg <= length
    assert cfg.n_frames == sum(1 for p in range(length) if p * hop + nperseg <= length)


def test_json_round_trip_with_normalisation():
    cfg = SpectrogramConfig(transform="log", window="hann").with_normalisation(
        np.linspace(-3, 3, 129), np.linspace(1, 2, 129))
    text = cfg.to_json()
    assert json.loads(text)["feature_version"] == FEATURE_VERSION
    back = SpectrogramConfig.from_json(text)
    assert back == cfg
    assert SpectrogramConfig.from_dict(SpectrogramConfig().to_dict()) == SpectrogramConfig()


@pytest.mark.parametrize("kwargs,match", [
    ({"fs": 0}, r"Parameter fs=0 must be a finite number of Hz > 0"),
    ({"fs": float("nan")}, r"Parameter fs=nan must be a finite"),
    ({"nperseg": 1}, r"Parameter nperseg=1 must be an integer >= 2"),
    ({"nperseg": 256.0}, r"Parameter nperseg=256.0 must be an integer >= 2"),
    ({"noverlap": 256}, r"Parameter noverlap=256 must be an integer in \[0, nperseg=256\)"),
    ({"noverlap": -1}, r"Parameter noverlap=-1 must be an integer"),
    ({"window_samples": 100}, r"Parameter window_samples=100 must be an integer >= nperseg=256"),
    ({"detrend": "linear"}, r"Parameter detrend='linear' must be one of \('constant', 'none'\)"),
    ({"transform": "mel"}, r"Parameter transform='mel' must be one of \('magnitude', 'log'\)"),
    ({"log_floor_db": float("inf")}, r"Parameter log_floor_db=inf must be finite"),
    ({"norm_mean": (0.0, 1.0)}, r"Parameter norm_mean has 2 values; it needs 1 or one per image row \(129\)"),
    ({"norm_std": (0.0,)}, r"Parameter norm_std must be > 0 everywhere"),
    ({"norm_mean": ("a",)}, r"Parameter norm_mean=\('a',\) must be a sequence of numbers"),
    ({"norm_mean": (float("nan"),)}, r"Parameter norm_mean must hold finite numbers"),
    ({"window": "nosuchwindow"}, r"Parameter window='nosuchwindow' is not a scipy window"),
    ({"window": ()}, r"Parameter window=\(\) is not a scipy window"),  # scipy raises IndexError on it
])
def test_every_validation_message(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        SpectrogramConfig(**kwargs)


def test_from_dict_refuses_unknown_keys_and_versions():
    data = SpectrogramConfig().to_dict()
    with pytest.raises(ConfigError, match=r"feature_version 99 is not supported"):
        SpectrogramConfig.from_dict({**data, "feature_version": 99})
    with pytest.raises(ConfigError, match=r"Unknown DSP config keys \['colour'\]"):
        SpectrogramConfig.from_dict({**data, "colour": "red"})
    with pytest.raises(ConfigError, match=r"DSP config is not valid JSON"):
        SpectrogramConfig.from_json("{nope")
    with pytest.raises(ConfigError, match=r"must be a JSON object"):
        SpectrogramConfig.from_dict([1, 2])


def test_config_is_frozen():
    cfg = SpectrogramConfig()
    with pytest.raises(AttributeError):
        cfg.fs = 1000.0


@pytest.mark.parametrize("alpha", [0.1, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("nperseg", [2, 3, 64, 255, 256, 1024])
def test_tukey_window_without_scipy_equals_scipy_bit_for_bit(alpha, nperseg):
    # The device side computes the default window without importing scipy.signal (1 s, 70 MB).
    from scipy.signal import get_window

    from edgecnn.config import _tukey_periodic

    np.testing.assert_array_equal(_tukey_periodic(("tukey", alpha), nperseg),
                                  get_window(("tukey", alpha), nperseg))
