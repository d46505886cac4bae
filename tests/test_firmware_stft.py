"""Streaming STFT: streaming equals batch, reset restores, lazy and eager frames agree."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgecnn.config import SpectrogramConfig
from edgecnn.dsp import features, frame_magnitudes
from firmware_sim.streaming_stft import StreamingSTFT

CFG = SpectrogramConfig()
# Normalised log features exercise the per-bin transform on the frequency axis of columns.
CFG_LOG = SpectrogramConfig(transform="log").with_normalisation(
    np.linspace(-60.0, -40.0, 129), np.linspace(5.0, 9.0, 129))


def _partition(n: int, sizes, rng) -> list[int]:
    """Block sizes covering n samples: a fixed size, or random sizes when sizes is 'random'."""
    out = []
    while sum(out) < n:
        out.append(int(rng.integers(1, 1500)) if sizes == "random" else sizes)
    out[-1] -= sum(out) - n
    return out


def _stream_images(stft: StreamingSTFT, signal: np.ndarray, blocks: list[int]):
    """Push the blocks; after every push collect (window_start, image) when a full image exists."""
    seen, pos, columns = {}, 0, []
    for size in blocks:
        new = stft.push(signal[pos:pos + size])
        columns.append(new)
        pos += size
        if stft.ready:
            seen[stft.window_start] = stft.image()
    return seen, np.concatenate(columns)


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("cfg", [CFG, CFG_LOG], ids=["magnitude", "log-normalised"])
@pytest.mark.parametrize("seed, sizes", list(enumerate([1, 7, 224, 256, 1000, "random"])))
def test_streaming_image_equals_batch_features(cfg, seed, sizes):
    rng = np.random.default_rng(seed)  # fixed per case (hash() of a str changes with PYTHONHASHSEED)
    n = cfg.window_samples + 20 * cfg.hop + 77
    signal = (rng.standard_normal(n) * rng.uniform(0.1, 10.0)).astype(np.float32)
    stft = StreamingSTFT(cfg)
    images, columns = _stream_images(stft, signal, _partition(n, sizes, rng))
    assert stft.frames == 1 + (n - cfg.nperseg) // cfg.hop == columns.shape[0]
    assert images, "a full image must exist"
    starts = sorted(images)
    batch = features(np.stack([signal[s:s + cfg.window_samples] for s in starts]), cfg)
    for image, expected in zip((images[s] for s in starts), batch):
        assert image.shape == cfg.input_shape and image.dtype == np.float32
        assert _rel_err(image, expected) <= 1e-6
    # Each column is the batch column of its frame, whatever block brought it.
    full = features(signal[None, : cfg.window_samples], cfg)[0, :, :, 0]
    np.testing.assert_allclose(columns[: cfg.n_frames].T, full, rtol=1e-6, atol=1e-6 * np.abs(full).max())


def test_one_push_of_many_frames_is_one_vectorised_call():
    calls = []

    def counting(frames, cfg):
        calls.append(frames.shape)
        return frame_magnitudes(frames, cfg)

    stft = StreamingSTFT(CFG, magnitude_fn=counting, frames_per_step=64)
    new = stft.push(np.random.default_rng(0).standard_normal(256 + 224 * 9))
    assert new.shape == (10, CFG.n_freq)
    assert calls == [(10, CFG.nperseg)]
    assert stft.push(np.zeros(100)).shape == (0, CFG.n_freq)  # no frame completed: no call
    assert len(calls) == 1


def test_reset_restores_the_initial_state():
    rng = np.random.default_rng(3)
    signal = rng.standard_normal(CFG.window_samples + 3000)
    fresh = StreamingSTFT(CFG)
    first = fresh.push(signal)
    fresh_image = fresh.image()
    used = StreamingSTFT(CFG)
    used.push(rng.standard_normal(12345))
    used.reset()
    assert (used.frames, used.samples_seen, used.ready) == (0, 0, False)
    assert not used.image().any()
    np.testing.assert_array_equal(used.push(signal), first)
    np.testing.assert_array_equal(used.image(), fresh_image)


def test_reset_with_origin_frames_from_the_new_clock():
    signal = np.random.default_rng(4).standard_normal(CFG.window_samples)
    stft = StreamingSTFT(CFG)
    stft.reset(origin=1_000_000)
    stft.push(signal)
    assert stft.window_start == 1_000_000 and stft.ready
    assert _rel_err(stft.image(), features(signal[None], CFG)[0]) <= 1e-6


@pytest.mark.parametrize("backend", ["numpy", "cmsis-f32", "cmsis-q15"])
def test_streaming_equals_batch_with_each_dsp_backend(backend):
    if backend.startswith("cmsis"):
        pytest.importorskip("cmsisdsp", reason="the CMSIS-DSP backends need the cmsisdsp package")
    from edgecnn.dsp import transform_magnitudes
    from firmware_sim.dsp_backends import backend_spectrogram, get_backend

    rng = np.random.default_rng(11)
    signal = (rng.standard_normal(CFG_LOG.window_samples + 5 * CFG_LOG.hop) * 2.0).astype(np.float32)
    stft = StreamingSTFT(CFG_LOG, magnitude_fn=get_backend(backend))
    images, _ = _stream_images(stft, signal, _partition(signal.size, "random", rng))
    for start, image in images.items():
        mag = backend_spectrogram(signal[start:start + CFG_LOG.window_samples], CFG_LOG, get_backend(backend))
        expected = transform_magnitudes(mag, CFG_LOG)[:, :, None]
        np.testing.assert_allclose(image, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(1, 3000), min_size=1, max_size=12))
def test_property_streaming_equals_batch_for_any_partition(seed, cuts):
    cfg = SpectrogramConfig(window_samples=1000)  # short windows keep each example fast
    signal = np.random.default_rng(seed).standard_normal(1000 + 4 * cfg.hop).astype(np.float32)
    stft = StreamingSTFT(cfg)
    images, pos, i = {}, 0, 0
    while pos < signal.size:
        size = cuts[i % len(cuts)]
        stft.push(signal[pos:pos + size])
        pos, i = pos + size, i + 1
        if stft.ready:
            images[stft.window_start] = stft.image()
    for start, image in images.items():
        expected = features(signal[None, start:start + 1000], cfg)[0]
        assert _rel_err(image, expected) <= 1e-6  # in practice bit for bit (docs/firmware_sim.md)


@pytest.mark.parametrize("sizes", [1, 256, 1000, "random"])
def test_feed_then_image_equals_push_and_batch(sizes):
    """feed() defers the frames to the next flush()/image(): the same images as push()."""
    rng = np.random.default_rng(21)
    n = CFG_LOG.window_samples + 60 * CFG_LOG.hop + 5
    signal = (rng.standard_normal(n) * 3.0).astype(np.float32)
    blocks = _partition(n, sizes, rng)
    eager, lazy = StreamingSTFT(CFG_LOG), StreamingSTFT(CFG_LOG)
    pos = 0
    for i, size in enumerate(blocks):
        eager.push(signal[pos:pos + size])
        lazy.feed(signal[pos:pos + size])
        pos += size
        assert lazy.frames == eager.frames and lazy.samples_seen == eager.samples_seen
        if lazy.ready and i % 3 == 0:
            np.testing.assert_array_equal(lazy.image(), eager.image())
            expected = features(signal[None, lazy.window_start:lazy.window_start + CFG_LOG.window_samples],
                                CFG_LOG)[0]
            assert _rel_err(lazy.image(), expected) <= 1e-6
    # feed + flush after every block returns exactly what push returns.
    fresh, pos, pushed, flushed = StreamingSTFT(CFG_LOG), 0, [], []
    eager.reset()
    for size in blocks:
        pushed.append(eager.push(signal[pos:pos + size]))
        fresh.feed(signal[pos:pos + size])
        flushed.append(fresh.flush())
        pos += size
    np.testing.assert_array_equal(np.concatenate(pushed), np.concatenate(flushed))


def test_large_push_in_steps_with_a_single_frame_last_step():
    rng = np.random.default_rng(8)
    signal = rng.standard_normal(CFG.window_samples * 3).astype(np.float32)
    stft = StreamingSTFT(CFG, frames_per_step=3)
    cut = CFG.nperseg + 33 * CFG.hop + 5  # 34 frames: 11 steps of 3, then a step of 1
    first = stft.push(signal[:cut])
    assert first.shape[0] == 34
    columns = np.concatenate((first, stft.push(signal[cut:])))
    assert columns.shape[0] == 1 + (signal.size - CFG.nperseg) // CFG.hop == stft.frames
    batch = features(signal[None, :CFG.window_samples], CFG)[0, :, :, 0]
    np.testing.assert_allclose(columns[:CFG.n_frames].T, batch, rtol=1e-6, atol=1e-6 * np.abs(batch).max())
    np.testing.assert_allclose(columns[33], frame_magnitudes(signal[33 * CFG.hop:33 * CFG.hop + CFG.nperseg],
                                                             CFG), rtol=1e-6)
    expected = features(signal[None, stft.window_start:stft.window_start + CFG.window_samples], CFG)[0]
    assert _rel_err(stft.image(), expected) <= 1e-6


@pytest.mark.parametrize("n_sensors", [1, 3])
def test_a_spectrogram_with_its_level_removed_streams_as_the_batch_definition(n_sensors):
    """level='column_mean' on the spectrogram: each column's mean in dB is removed (the frame kernel
    does not do that, so these frames go through the definition): streamed images equal batch ones."""
    cfg = SpectrogramConfig(transform="log", level="column_mean").with_normalisation(0.0, 6.0)
    signals = np.random.default_rng(9).standard_normal((n_sensors, 30000)).astype(np.float32)
    signals *= np.linspace(0.1, 3.0, 30000, dtype=np.float32)  # a level that changes along the stream
    stft = StreamingSTFT(cfg, n_sensors=n_sensors)
    images = np.zeros((n_sensors, *cfg.input_shape[:2]), dtype=np.float32)
    checked = 0
    for pos in range(0, 30000, 1000):
        stft.feed(signals[:, pos:pos + 1000] if n_sensors > 1 else signals[0, pos:pos + 1000])
        if stft.ready:
            stft.images_into(images)
            start = stft.window_start
            expected = features(signals[:, start:start + cfg.window_samples], cfg)[..., 0]
            assert _rel_err(images, expected) <= 1e-6
            checked += 1
    assert checked >= 20
