"""Property: the device loop equals batch classification for any block partition, with or without
faults.

For random signals, random block sizes, random decision cadences and random faults (NaN or Inf
samples, dropped blocks), ``StreamRuntime`` must take its decisions at the batch schedule's
sample indices; every valid decision must have classified exactly the batch feature image of its
window of the clean signal; and a decision must be invalid exactly when its window touched a
faulty or missing sample. (The frame-level streaming-equals-batch property of the STFT alone is in
tests/test_firmware_stft.py.) The interpreter is a small fixed numpy classifier that records each
image, so many examples run in seconds.
"""

from __future__ import annotations

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from edgecnn.config import SpectrogramConfig
from edgecnn.dsp import features
from firmware_sim.decisions import DecisionPolicy
from firmware_sim.runtime import StreamRuntime
from firmware_sim.sources import Block

CFG = SpectrogramConfig(window_samples=1000)  # 4 frames per image keeps each example fast
SPAN = (CFG.n_frames - 1) * CFG.hop + CFG.nperseg  # samples one image covers


class RecordingClassifier:
    """A fixed linear softmax classifier over the image that remembers what it was shown."""

    def __init__(self, seed: int = 0):
        self.weights = np.random.default_rng(seed).standard_normal((2, CFG.n_freq * CFG.n_frames))
        self.images: list[np.ndarray] = []

    def run(self, image: np.ndarray) -> np.ndarray:
        self.images.append(np.array(image, copy=True))
        logits = self.weights @ np.nan_to_num(np.asarray(image, np.float64).ravel())
        e = np.exp(logits - logits.max())
        return (e / e.sum()).astype(np.float32)


def _blocks(signal: np.ndarray, sizes: list[int], drop: set[int]):
    pos, seq, i = 0, 0, 0
    while pos < signal.size:
        size = sizes[i % len(sizes)]
        if seq not in drop:
            yield Block(seq, signal[pos:pos + size], pos)
        pos, seq, i = pos + size, seq + 1, i + 1


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sizes=st.lists(st.integers(1, 300), min_size=1, max_size=8),
       every=st.integers(1, 6), n_bad=st.integers(0, 3), drop=st.sets(st.integers(1, 40), max_size=3),
       bad_value=st.sampled_from([np.nan, np.inf, -np.inf]))
def test_stream_decisions_equal_batch_with_random_partitions_and_faults(seed, sizes, every, n_bad, drop,
                                                                        bad_value):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(SPAN, 4 * CFG.window_samples))
    clean = rng.standard_normal(n).astype(np.float32) * np.float32(rng.uniform(0.01, 100))
    signal = clean.copy()
    bad_at = rng.choice(n, size=n_bad, replace=False)
    signal[bad_at] = bad_value

    # The samples the runtime never sees: dropped blocks (at most 3 x 300 samples, less than a
    # window, so the gap is filled rather than restarting the STFT; the very last block is never
    # dropped, as its loss leaves no gap the runtime could notice).
    starts = np.cumsum([0] + [sizes[i % len(sizes)] for i in range(n)])
    n_blocks = int(np.searchsorted(starts, n))
    drop = {d for d in drop if d < n_blocks - 1}
    missing = [(int(starts[d]), int(min(starts[d + 1], n))) for d in drop]
    spans = [(int(i), int(i) + 1) for i in bad_at] + missing

    model = RecordingClassifier(seed % 1000)
    runtime = StreamRuntime(CFG, ["A", "B"], model, policy=DecisionPolicy(every_frames=every))
    decisions = []
    summary = runtime.run(_blocks(signal, sizes, drop), decisions.append)

    # The batch schedule: a decision after frame n_frames, then every `every` frames.
    n_frames = 1 + (n - CFG.nperseg) // CFG.hop
    expected_starts = [k * every * CFG.hop for k in range((n_frames - CFG.n_frames) // every + 1)]
    assert [d.window_start for d in decisions] == expected_starts
    assert all(d.sample_index == d.window_start + SPAN for d in decisions)
    assert len(model.images) == len(decisions)

    # The image's frames cover SPAN (928) of the window's 1000 samples; a stream may end in between.
    padded = np.concatenate([clean, np.zeros(CFG.window_samples, np.float32)])
    batch = features(np.stack([padded[s:s + CFG.window_samples] for s in expected_starts]), CFG)
    for d, image, expected in zip(decisions, model.images, batch):
        touched = any(d.window_start < end and start < d.sample_index for start, end in spans)
        assert d.valid == (not touched)
        if d.valid:
            scale = max(float(np.max(np.abs(expected))), 1e-30)
            assert float(np.max(np.abs(image - expected))) <= 1e-6 * scale
    assert summary["invalid_decisions"] == sum(not d.valid for d in decisions)
    event(f"invalid decisions: {'some' if summary['invalid_decisions'] else 'none'}")
    assert summary["faults"]["nonfinite_samples"] == n_bad - sum(
        any(s <= i < e for s, e in missing) for i in bad_at)  # a dropped block's NaN is never seen
    assert summary["faults"]["dropped_blocks"] == len(drop)
    assert summary["samples"] == n
