"""The streaming runtime on a real bundle: decisions equal offline classification, runtimes agree,
faults are counted and invalidate decisions, the loop recovers. Uses the ``tiny_bundle`` fixture
(a real, tiny trained model exported with every format)."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn import dsp
from export.bundle import load_bundle
from firmware_sim.decisions import DecisionPolicy
from firmware_sim.interpreters import RUNTIMES, open_interpreter
from firmware_sim.runtime import StreamRuntime
from firmware_sim.sources import ArraySource, SynthSource, inject_faults

SPEC = "synth:duration=6,onset=3,seed=7"


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def signal(bundle):
    return np.concatenate(list(SynthSource(SPEC, bundle.cfg.fs).segments()))


def _stream(bundle, blocks, runtime="litert", **kwargs):
    with open_interpreter(runtime, bundle) as interp:
        rt = StreamRuntime(bundle.cfg, bundle.classes, interp, **kwargs)
        decisions = []
        summary = rt.run(blocks, decisions.append)
    return decisions, summary, rt


def _probs(decisions):
    return np.stack([d.probabilities for d in decisions])


def test_streamed_decisions_equal_offline_classification(bundle, signal):
    cfg = bundle.cfg
    decisions, summary, _ = _stream(bundle, ArraySource(signal, cfg.fs, block=256).blocks())
    # 76800 samples: frames 1 + (76800 - 256) // 224 = 342; decisions at 44, 58, ... frames.
    assert summary["frames"] == 342
    assert len(decisions) == summary["decisions"] == 1 + (342 - 44) // 14
    starts = [d.window_start for d in decisions]
    assert starts == [14 * 224 * i for i in range(len(decisions))]
    assert all(d.sample_index == d.window_start + 43 * 224 + 256 for d in decisions)
    offline_images = dsp.features(np.stack([signal[s:s + cfg.window_samples] for s in starts]), cfg)
    entry = bundle.model("tflite", "int8")
    with open_interpreter("litert", bundle) as interp:
        offline = np.stack([interp.run(image) for image in offline_images])
    streamed = _probs(decisions)
    # Same windows, same model, same runtime: identical up to a one-LSB quantisation flip.
    lsb = entry.output.scale
    assert np.max(np.abs(streamed - offline)) <= lsb + 1e-7
    assert np.mean(np.all(streamed == offline, axis=1)) >= 0.9
    assert [d.valid for d in decisions] == [True] * len(decisions)


@pytest.mark.parametrize("block", [1, 7, 1000, 10000])
def test_block_size_does_not_change_decisions(bundle, signal, block):
    reference, _, _ = _stream(bundle, ArraySource(signal, bundle.cfg.fs, block=256).blocks())
    decisions, _, _ = _stream(bundle, ArraySource(signal, bundle.cfg.fs, block=block).blocks())
    assert [d.sample_index for d in decisions] == [d.sample_index for d in reference]
    np.testing.assert_allclose(_probs(decisions), _probs(reference), atol=bundle.model().output.scale + 1e-7)


def test_litert_tflm_and_onnxruntime_agree(bundle, signal, capsys):
    policy = DecisionPolicy(smooth=2, agree=2, min_dwell=1)
    runs = {name: _stream(bundle, ArraySource(signal, bundle.cfg.fs).blocks(), runtime=name, policy=policy)
            for name in ("litert", "tflm", "onnxruntime")}
    ref = runs["litert"][0]
    lsb = bundle.model("tflite", "int8").output.scale
    for name, (decisions, summary, _) in runs.items():
        assert [d.sample_index for d in decisions] == [d.sample_index for d in ref]
        err = np.max(np.abs(_probs(decisions) - _probs(ref)))
        states = [d.state for d in decisions]
        argmax = np.mean(_probs(decisions).argmax(1) == _probs(ref).argmax(1))
        with capsys.disabled():
            print(f"\n{name}: max |p - p_litert| {err:.4f}, argmax agreement {argmax:.3f}, "
                  f"events {summary['events']}")
        # tflm runs the same int8 file with reference kernels: within two output steps of XNNPACK;
        # the int8 ONNX (QDQ) model quantises slightly differently.
        assert err <= (2 * lsb + 1e-6 if name != "onnxruntime" else 0.05)
        assert states == [d.state for d in ref]


def test_faults_are_counted_invalidate_decisions_and_the_loop_recovers(bundle, signal):
    cfg = bundle.cfg
    clean, _, _ = _stream(bundle, ArraySource(signal, cfg.fs, block=256).blocks())
    blocks = inject_faults(ArraySource(signal, cfg.fs, block=256).blocks(),
                           nan=[60], inf=[61], drop=[150, 151, 152], repeat=[200])
    decisions, summary, rt = _stream(bundle, blocks)
    faults = summary["faults"]
    assert faults["nonfinite_samples"] == 2 and faults["faulty_blocks"] == 2
    assert faults["dropped_blocks"] == 3 and faults["gaps"] == 1 and faults["filled_samples"] == 3 * 256
    assert faults["repeated_blocks"] == 1
    # The clock survived the gap: the same decision points as the clean run.
    assert [d.sample_index for d in decisions] == [d.sample_index for d in clean]
    fault_spans = [(60 * 256 + 128, 61 * 256 + 129), (150 * 256, 153 * 256)]
    for d, ref in zip(decisions, clean):
        touched = any(d.window_start < end and start < d.sample_index for start, end in fault_spans)
        assert d.valid == (not touched), (d.window_start, d.sample_index)
        if d.valid:  # windows clear of every fault see exactly the clean samples
            np.testing.assert_array_equal(d.probabilities, ref.probabilities)
    invalid = sum(not d.valid for d in decisions)
    assert invalid == summary["invalid_decisions"] == faults["invalid_decisions"] > 0
    assert all(e["decision"] in {d.index for d in decisions if d.valid} for e in summary["events"])
    # Recovery: the first valid decision after the gap comes within one window plus one cadence.
    gap_end = fault_spans[1][1]
    first_valid = min(d.sample_index for d in decisions if d.valid and d.window_start >= gap_end)
    assert first_valid - gap_end <= cfg.window_samples + 14 * cfg.hop


def test_a_long_gap_restarts_the_stft_at_the_new_position(bundle, signal):
    cfg = bundle.cfg
    blocks = inject_faults(ArraySource(signal, cfg.fs, block=256).blocks(), drop=range(100, 160))
    decisions, summary, rt = _stream(bundle, blocks)
    assert summary["faults"]["restarts"] == 1 and summary["faults"]["dropped_blocks"] == 60
    after = [d for d in decisions if d.sample_index > 160 * 256]
    assert after[0].window_start == 160 * 256 and after[0].valid
    assert all(d.valid for d in decisions)  # no window ever spanned the missing samples


def test_saturation_is_a_fault_when_the_source_has_a_full_scale(bundle, signal):
    full_scale = float(np.abs(signal).max()) * 1.01
    clipped = signal.copy()
    clipped[20000:20010] = full_scale
    decisions, summary, _ = _stream(bundle, ArraySource(clipped, bundle.cfg.fs).blocks(),
                                    full_scale=full_scale)
    assert summary["faults"]["saturated_samples"] == 10
    assert any(not d.valid for d in decisions)


def test_reset_restarts_the_runtime(bundle, signal):
    with open_interpreter("litert", bundle) as interp:
        rt = StreamRuntime(bundle.cfg, bundle.classes, interp)
        first = []
        rt.run(ArraySource(signal, bundle.cfg.fs).blocks(), first.append)
        rt.reset()
        assert rt.summary()["decisions"] == 0 and rt.stft.frames == 0
        again = []
        rt.run(ArraySource(signal, bundle.cfg.fs).blocks(), again.append)
    np.testing.assert_array_equal(_probs(first), _probs(again))


def test_tflm_reports_its_real_arena(bundle):
    with open_interpreter("tflm", bundle) as interp:
        assert interp.arena_bytes() == bundle.footprint["arena_bytes_tflm"]


def test_unknown_or_missing_runtime_is_a_clear_error(bundle):
    from edgecnn.errors import ConfigError

    with pytest.raises(ConfigError, match=r"--runtime 'tvm' is not one of"):
        open_interpreter("tvm", bundle)
    assert set(RUNTIMES) == {"litert", "tflm", "onnxruntime", "tflite-runtime"}
    try:
        import tflite_runtime  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="runtime tflite-runtime is not installed"):
            open_interpreter("tflite-runtime", bundle)


def test_a_stalled_source_is_counted_and_decisions_stay_valid(bundle, signal):
    now = [0.0]
    period = 256 / bundle.cfg.fs

    def arriving(blocks):
        for block in blocks:
            now[0] += period * (6.0 if block.seq == 100 else 1.0)  # block 100 comes 5 periods late
            yield block

    blocks = arriving(ArraySource(signal, bundle.cfg.fs, block=256).blocks())
    with open_interpreter("litert", bundle) as interp:
        rt = StreamRuntime(bundle.cfg, bundle.classes, interp, clock=lambda: now[0])
        summary = rt.run(blocks, watch_stalls=True)
    assert summary["faults"]["stalls"] == 1
    assert summary["faults"]["longest_stall_s"] == pytest.approx(6 * period)
    assert summary["invalid_decisions"] == 0
