"""The envelope feature: what it measures, and that every path computes the one definition."""

import numpy as np
import pytest

from edgecnn import dsp
from edgecnn.config import SpectrogramConfig
from edgecnn.errors import ConfigError
from firmware_sim.streaming_stft import StreamingSTFT

FS = 12800.0
ENVELOPE = SpectrogramConfig(feature="envelope", transform="log", level="column_mean")


def impacts(rate_hz: float, n: int, *, ring_hz: float = 3000.0, seed: int = 0, noise: float = 0.05) -> np.ndarray:
    """A bearing-like signal: decaying bursts of a resonance at ``ring_hz``, ``rate_hz`` times a second."""
    rng = np.random.default_rng(seed)
    x = noise * rng.standard_normal(n)
    ring = np.exp(-np.arange(80) / 12.0) * np.sin(2 * np.pi * ring_hz * np.arange(80) / FS)
    for start in np.arange(0.0, n - 80, FS / rate_hz):
        x[int(start):int(start) + 80] += ring
    return x.astype(np.float32)


def modulation_hz(cfg: SpectrogramConfig) -> np.ndarray:
    return np.arange(1, cfg.image_rows + 1) * cfg.envelope_rate_hz / cfg.envelope_nfft


def test_shape_and_derived_sizes():
    assert ENVELOPE.input_shape == (128, 27, 1)
    assert ENVELOPE.envelope_bins == (20, 120)  # 1000 and 6000 Hz at 50 Hz per bin
    assert ENVELOPE.envelope_per_frame == 14
    assert dsp.features(impacts(100, 10000)[None], ENVELOPE).shape == (1, 128, 27, 1)


@pytest.mark.parametrize("rate_hz,ring_hz", [(107.0, 3000.0), (162.0, 2200.0), (57.0, 4500.0)])
def test_the_strongest_line_is_the_impact_rate_whatever_the_resonance(rate_hz, ring_hz):
    """Every column's envelope spectrum peaks at the impact rate (within one row, 3.125 Hz)."""
    cfg = ENVELOPE.replace(level="none")
    image = dsp.magnitude_image(impacts(rate_hz, 10000, ring_hz=ring_hz), cfg)
    freqs = modulation_hz(cfg)
    above_dc = freqs > 20.0  # the envelope's mean is removed; its lowest rows hold only leakage
    peaks = freqs[above_dc][np.argmax(image[above_dc], axis=0)]
    assert np.all(np.abs(peaks - rate_hz) <= cfg.envelope_rate_hz / cfg.envelope_nfft), peaks


def test_impacts_stand_out_and_noise_does_not():
    """Averaged over the window's columns, impacts put a line 25 dB or more above the mean level;
    broadband noise (nothing repeating) stays within 12 dB of it (chance peaks of a flat spectrum)."""
    noise = dsp.features(np.random.default_rng(3).standard_normal((8, 10000)).astype(np.float32), ENVELOPE)
    lines = dsp.features(np.stack([impacts(rate, 10000) for rate in (57, 107, 162)]), ENVELOPE)
    assert noise[..., 0].mean(axis=-1)[:, 6:].max() < 12.0  # dB; rows from 21 Hz
    assert lines[..., 0].mean(axis=-1).max(axis=-1).min() > 25.0


def test_level_removal_ignores_sensor_gain():
    x = impacts(107, 10000)
    quiet, loud = dsp.features(np.stack([x, 10 * x]), ENVELOPE)[..., 0]
    assert np.max(np.abs(quiet - loud)) < 1e-3  # dB: a 20 dB gain change leaves the image


@pytest.mark.parametrize("block", [1, 7, 256, 5000, 40000])
def test_streamed_image_equals_the_batch_image(block):
    cfg = ENVELOPE.with_normalisation(np.linspace(-3, 3, 128), np.linspace(1, 2, 128))
    x = impacts(91, 40000, seed=1)
    stream = StreamingSTFT(cfg)
    images = []
    for start in range(0, x.size, block):
        stream.push(x[start:start + block])
        if stream.ready:
            images.append((stream.window_start, stream.image()))
    assert images
    padded = np.concatenate((x, np.zeros(cfg.window_samples, np.float32)))
    for window_start, image in images[:: max(1, len(images) // 5)] + images[-1:]:
        expected = dsp.features(padded[window_start:window_start + cfg.window_samples][None], cfg)[0]
        np.testing.assert_allclose(image, expected, rtol=1e-6, atol=1e-5)


def test_multi_sensor_images_equal_single_sensor_ones():
    cfg = ENVELOPE
    signals = np.stack([impacts(rate, 20000, seed=i) for i, rate in enumerate((80.0, 107.0, 150.0))])
    multi = StreamingSTFT(cfg, n_sensors=3)
    singles = [StreamingSTFT(cfg) for _ in range(3)]
    for start in range(0, 20000, 256):
        multi.push(signals[:, start:start + 256])
        for s, single in enumerate(singles):
            single.push(signals[s, start:start + 256])
    out = np.zeros((3, cfg.image_rows, cfg.image_cols), dtype=np.float32)
    multi.images_into(out)
    for s, single in enumerate(singles):
        np.testing.assert_array_equal(out[s], single.image()[..., 0])
        np.testing.assert_array_equal(multi.image(s), single.image())


def test_cmsis_backends_refuse_the_envelope_feature():
    from firmware_sim.dsp_backends import get_backend

    with pytest.raises(ConfigError, match="envelope feature runs on the numpy DSP backend"):
        StreamingSTFT(ENVELOPE, magnitude_fn=get_backend("cmsis-f32"))
    from export.writer import device_section

    with pytest.raises(ConfigError, match="computes spectrograms"):
        device_section("cmsis-q15", None, ENVELOPE)


def test_config_round_trip_and_old_configs():
    assert SpectrogramConfig.from_dict(ENVELOPE.to_dict()) == ENVELOPE
    old = SpectrogramConfig().to_dict()
    for key in ("feature", "envelope_band_hz", "envelope_decimation", "envelope_frames", "envelope_nfft", "level"):
        old.pop(key)
    old["feature_version"] = 1
    assert SpectrogramConfig.from_dict(old) == SpectrogramConfig()  # a version-1 config is a spectrogram


@pytest.mark.parametrize("changes,match", [
    ({"feature": "mfcc"}, "feature='mfcc' must be one of"),
    ({"level": "column_mean", "transform": "magnitude"}, "needs transform='log'"),
    ({"envelope_decimation": 15}, "must be a divisor of the hop"),
    ({"envelope_band_hz": (6000.0, 1000.0)}, "must satisfy 0 < low < high"),
    ({"envelope_frames": 60}, r"must be an integer in \[2, n_frames=44\]"),
    ({"envelope_nfft": 128}, "must be an integer >= the envelope values per column"),
])
def test_bad_envelope_settings_are_refused(changes, match):
    with pytest.raises(ConfigError, match=match):
        ENVELOPE.replace(**changes)


def test_device_buffers_count_the_envelope_image():
    from firmware_sim.profiles import runtime_buffer_bytes

    parts = runtime_buffer_bytes(ENVELOPE, block=256, input_itemsize=1, n_classes=2)
    assert parts["rolling_image"] == 128 * 27
    assert parts["envelope_history"] == 18 * 14 * 4
