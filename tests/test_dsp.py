import numpy as np
import pytest
from scipy.signal import spectrogram as scipy_spectrogram

from edgecnn import dsp
from edgecnn.config import SpectrogramConfig
from edgecnn.errors import InputError


def _slow_reference(x, cfg):
    """A deliberately slow, loop-based STFT from the written definition (not from dsp.py)."""
    win = cfg.window_array
    cols = []
    for p in range(cfg.n_frames if x.size == cfg.window_samples else 1 + (x.size - cfg.nperseg) // cfg.hop):
        seg = x[p * cfg.hop: p * cfg.hop + cfg.nperseg].astype(np.float64)
        seg = seg - seg.mean() if cfg.detrend == "constant" else seg
        spec = [abs(np.sum(seg * win * np.exp(-2j * np.pi * k * np.arange(cfg.nperseg) / cfg.nperseg)))
                for k in range(cfg.n_freq)]
        cols.append(np.asarray(spec) / win.sum())
    return np.stack(cols, axis=1)


@pytest.mark.parametrize("nperseg,noverlap,window", [
    (256, 32, ("tukey", 0.25)), (128, 64, "hann"), (512, 128, "hamming"), (200, 50, ("kaiser", 8.0)),
    (64, 0, "boxcar"),
])
def test_batch_equals_scipy_spectrogram(nperseg, noverlap, window):
    rng = np.random.default_rng(nperseg)
    cfg = SpectrogramConfig(nperseg=nperseg, noverlap=noverlap, window=window, window_samples=4000)
    x = rng.normal(size=(6, 4000)) * rng.uniform(0.01, 100, (6, 1)) + rng.normal(size=(6, 1))
    _, _, expected = scipy_spectrogram(x, fs=cfg.fs, window=window, nperseg=nperseg, noverlap=noverlap,
                                       scaling="spectrum", mode="magnitude")
    got = dsp.spectrogram(x, cfg)
    assert got.shape == expected.shape
    rel = np.abs(got - expected).max(axis=(1, 2)) / np.abs(expected).max(axis=(1, 2))
    assert rel.max() <= 1e-6


def test_default_shape_and_slow_reference():
    cfg = SpectrogramConfig()
    x = np.random.default_rng(1).normal(size=10000)
    got = dsp.spectrogram(x, cfg)
    assert got.shape == (129, 44)
    small = SpectrogramConfig(nperseg=32, noverlap=8, window_samples=200)
    y = np.random.default_rng(2).normal(size=200)
    np.testing.assert_allclose(dsp.spectrogram(y, small), _slow_reference(y, small), rtol=1e-9, atol=1e-12)


def test_frame_function_stacked_equals_batch():
    cfg = SpectrogramConfig()
    x = np.random.default_rng(3).normal(size=10000).astype(np.float32)
    frames = [x[p * cfg.hop: p * cfg.hop + cfg.nperseg] for p in range(cfg.n_frames)]
    stacked = np.stack([dsp.frame_magnitudes(f, cfg) for f in frames], axis=1)
    np.testing.assert_allclose(stacked, dsp.spectrogram(x, cfg), rtol=1e-12)
    feat_cols = np.stack([dsp.frame_features(f, cfg) for f in frames], axis=1)
    np.testing.assert_array_equal(feat_cols, dsp.features(x[None], cfg)[0, :, :, 0])


def test_features_log_transform_and_fitted_normalisation():
    rng = np.random.default_rng(4)
    train = rng.normal(size=(20, 10000))
    cfg = SpectrogramConfig(transform="log", log_floor_db=-100.0)
    raw = dsp.features(train, cfg)
    mag = dsp.spectrogram(train, cfg)
    np.testing.assert_allclose(raw[..., 0], 20 * np.log10(np.maximum(mag, 1e-5)), rtol=1e-5)
    mean, std = dsp.fit_normalisation(raw)
    assert mean.shape == (129,) and std.shape == (129,)
    cfg_n = cfg.with_normalisation(mean, std)
    normed = dsp.features(train, cfg_n)
    # per-bin statistics of the training data itself become ~0 / ~1
    np.testing.assert_allclose(normed[..., 0].mean(axis=(0, 2)), 0.0, atol=1e-4)
    np.testing.assert_allclose(normed[..., 0].std(axis=(0, 2)), 1.0, atol=1e-3)
    # a new window is normalised with the stored constants, not its own statistics
    other = rng.normal(size=(1, 10000)) * 10.0
    expected = (dsp.features(other, cfg)[0, :, :, 0] - mean[:, None]) / std[:, None]
    np.testing.assert_allclose(dsp.features(other, cfg_n)[0, :, :, 0], expected, rtol=1e-4, atol=1e-4)


def test_log_floor_maps_silence_to_constant():
    cfg = SpectrogramConfig(transform="log", log_floor_db=-90.0)
    out = dsp.features(np.zeros((1, 10000)), cfg)
    assert np.all(out == np.float32(-90.0))


def test_global_normalisation_and_zero_spread_bins():
    images = np.ones((3, 129, 44, 1))
    mean, std = dsp.fit_normalisation(images, per_bin=False)
    assert mean.shape == (1,) and std[0] == 1.0


def test_progress_and_chunking_over_many_windows():
    cfg = SpectrogramConfig()
    x = np.random.default_rng(5).normal(size=(dsp.CHUNK_WINDOWS + 3, 10000)).astype(np.float32)
    calls = []
    out = dsp.features(x, cfg, progress=lambda d, t: calls.append((d, t)))
    assert out.shape == (x.shape[0], 129, 44, 1) and out.dtype == np.float32
    assert calls[-1] == (x.shape[0], x.shape[0]) and len(calls) == 2
    np.testing.assert_allclose(out[-1, :, :, 0], dsp.spectrogram(x[-1], cfg), rtol=1e-6)


def test_dsp_input_errors():
    cfg = SpectrogramConfig()
    with pytest.raises(InputError, match=r"windows must be \(N, 10000\) for this config, got shape \(2, 999\)"):
        dsp.features(np.zeros((2, 999)), cfg)
    with pytest.raises(InputError, match=r"frames have 100 samples; the config needs nperseg=256"):
        dsp.frame_magnitudes(np.zeros(100), cfg)
    with pytest.raises(InputError, match=r"signal has 10 samples; at least nperseg=256 needed"):
        dsp.spectrogram(np.zeros(10), cfg)
    assert dsp.frame_count(255, cfg) == 0 and dsp.frame_count(10000, cfg) == 44


@pytest.mark.parametrize("transform, normalised", [("log", True), ("log", False), ("magnitude", True)])
@pytest.mark.parametrize("shape", [(1,), (7,), (3, 5), (2, 40)])
def test_frame_kernel_computes_frame_features_in_place(transform, normalised, shape):
    """The device's in-place kernel is the reference frame_features, for one frame (1-D arithmetic),
    many, and many sensors' many frames."""
    cfg = SpectrogramConfig(transform=transform)
    if normalised:
        rng = np.random.default_rng(1)
        cfg = cfg.with_normalisation(rng.normal(-60.0, 5.0, cfg.n_freq), rng.uniform(2.0, 9.0, cfg.n_freq))
    frames = (np.random.default_rng(7).standard_normal((*shape, cfg.nperseg)) * 0.3 + 0.1).astype(np.float32)
    kernel = dsp.FrameKernel(cfg, rows=int(np.prod(shape)))
    out = np.full((*shape, cfg.n_freq), np.nan, dtype=np.float32)
    assert kernel(frames, out) is out
    expected = dsp.frame_features(frames, cfg)
    # The transform is one multiply-add: the same value to a float64 rounding, far below float32's.
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6 * float(np.abs(expected).max()))
    again = np.empty_like(out)
    kernel(frames, again)  # no state carried from one call to the next
    np.testing.assert_array_equal(again, out)


def test_frame_kernel_refuses_what_it_does_not_compute():
    with pytest.raises(InputError, match="spectrogram features without level removal"):
        dsp.FrameKernel(SpectrogramConfig(transform="log", feature="envelope", level="column_mean"), rows=4)
