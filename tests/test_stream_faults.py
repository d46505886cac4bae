"""Stream faults in firmware_sim's device loop, one test per fault.

NaN and Inf bursts, saturation at the ADC's full scale (int16 on the raw source), dropped and
repeated blocks, a stalled source, single-sample blocks, a source that ends mid-window. For each:
the loop runs to the end, the fault is counted, exactly the decisions whose window touched a
faulty (or substituted) sample are invalid, valid decisions equal those of the clean stream, no
event comes from an invalid decision, and the first window lying after the fault is valid again
(recovery within one window plus one decision step). Uses the ``tiny_bundle`` fixture (a real
tiny model on LiteRT).
"""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest

from edgecnn import dsp
from export.bundle import load_bundle
from firmware_sim.decisions import DecisionPolicy
from firmware_sim.interpreters import open_interpreter
from firmware_sim.runtime import StreamRuntime
from firmware_sim.sources import ArraySource, Block, RawSource, SynthSource, inject_faults

SPEC = "synth:duration=6,seed=11"
BLOCK = 256
EVERY = 14  # frames between decisions (the default 0.25 s)


@pytest.fixture(scope="module")
def bundle(tiny_bundle):
    return load_bundle(tiny_bundle)


@pytest.fixture(scope="module")
def signal(bundle):
    return np.concatenate(list(SynthSource(SPEC, bundle.cfg.fs).segments()))


@pytest.fixture(scope="module")
def clean(bundle, signal):
    decisions, summary, _ = _stream(bundle, ArraySource(signal, bundle.cfg.fs, block=BLOCK).blocks())
    assert summary["invalid_decisions"] == 0
    return decisions


def _stream(bundle, blocks, *, interpreter=None, **kwargs):
    with open_interpreter("litert", bundle) as interp:
        rt = StreamRuntime(bundle.cfg, bundle.classes, interpreter(interp) if interpreter else interp,
                           policy=kwargs.pop("policy", DecisionPolicy(every_frames=EVERY)), **kwargs)
        decisions: list = []
        summary = rt.run(blocks, decisions.append, watch_stalls=kwargs.get("clock") is not None)
    return decisions, summary, rt


def _replace_blocks(blocks, seqs, make):
    """Blocks whose sequence number is in ``seqs`` get ``make(samples)`` as their samples."""
    for block in blocks:
        if block.seq in seqs:
            block = dataclasses.replace(block, samples=make(block.samples.copy()))
        yield block


def check_fault_contract(cfg, decisions, summary, clean, spans) -> list[int]:
    """The contract every fault must keep; returns each span's recovery time in samples (from the
    end of the fault to the end of the first valid window after it)."""
    reference = {d.sample_index: d for d in clean}
    for d in decisions:
        touched = any(d.window_start < end and start < d.sample_index for start, end in spans)
        assert d.valid == (not touched), (d.window_start, d.sample_index, spans)
        if d.valid:  # a valid decision saw exactly the clean samples
            np.testing.assert_array_equal(d.probabilities, reference[d.sample_index].probabilities)
    n_invalid = sum(not d.valid for d in decisions)
    assert n_invalid == summary["invalid_decisions"] == summary["faults"]["invalid_decisions"]
    valid_indices = {d.index for d in decisions if d.valid}
    assert all(event["decision"] in valid_indices for event in summary["events"])
    recoveries = []
    for _, end in spans:
        after = [d for d in decisions if d.window_start >= end]
        assert after and after[0].valid  # the first window clear of the fault is valid again
        recovery = after[0].sample_index - end
        assert recovery <= cfg.window_samples + EVERY * cfg.hop
        recoveries.append(recovery)
    return recoveries


def test_nan_burst(bundle, signal, clean):
    cfg = bundle.cfg
    blocks = _replace_blocks(ArraySource(signal, cfg.fs, block=BLOCK).blocks(), {60, 61, 62, 63},
                             lambda s: np.full_like(s, np.nan))
    decisions, summary, _ = _stream(bundle, blocks)
    assert summary["faults"]["nonfinite_samples"] == 4 * BLOCK and summary["faults"]["faulty_blocks"] == 4
    assert [d.sample_index for d in decisions] == [d.sample_index for d in clean]
    check_fault_contract(cfg, decisions, summary, clean, [(60 * BLOCK, 64 * BLOCK)])
    assert summary["invalid_decisions"] > 0


def test_inf_burst_of_both_signs(bundle, signal, clean):
    cfg = bundle.cfg

    def infs(samples):
        samples[::2], samples[1::2] = np.inf, -np.inf
        return samples

    blocks = _replace_blocks(ArraySource(signal, cfg.fs, block=BLOCK).blocks(), {100, 101}, infs)
    decisions, summary, _ = _stream(bundle, blocks)
    assert summary["faults"]["nonfinite_samples"] == 2 * BLOCK and summary["faults"]["faulty_blocks"] == 2
    check_fault_contract(cfg, decisions, summary, clean, [(100 * BLOCK, 102 * BLOCK)])


def test_saturation_at_the_adc_full_scale(bundle, signal, clean):
    """int16 samples pinned at +32767 / -32768 (an overdriven ADC) through the raw source."""
    cfg = bundle.cfg
    scale = float(np.abs(signal).max()) / 30000  # the clean signal stays below full scale
    counts = np.round(signal / scale).astype(np.int16)
    counts[30000:30300] = 32767
    counts[30300:30500] = -32768
    source = RawSource(io.BytesIO(counts.tobytes()), cfg.fs, dtype="int16", scale=scale, block=BLOCK)
    assert source.full_scale == pytest.approx(32767 * scale)
    clean_raw, _, _ = _stream(bundle, RawSource(io.BytesIO(np.round(signal / scale).astype(np.int16).tobytes()),
                                                cfg.fs, scale=scale, block=BLOCK).blocks(),
                              full_scale=source.full_scale)
    decisions, summary, _ = _stream(bundle, source.blocks(), full_scale=source.full_scale)
    assert summary["faults"]["saturated_samples"] == 500
    assert summary["faults"]["nonfinite_samples"] == 0
    check_fault_contract(cfg, decisions, summary, clean_raw, [(30000, 30500)])


def test_dropped_blocks_are_a_counted_gap_filled_and_invalidated(bundle, signal, clean):
    cfg = bundle.cfg
    blocks = inject_faults(ArraySource(signal, cfg.fs, block=BLOCK).blocks(), drop=[150, 151, 152])
    decisions, summary, _ = _stream(bundle, blocks)
    faults = summary["faults"]
    assert (faults["gaps"], faults["dropped_blocks"], faults["filled_samples"]) == (1, 3, 3 * BLOCK)
    assert summary["samples"] == signal.size  # the clock survived the gap
    check_fault_contract(cfg, decisions, summary, clean, [(150 * BLOCK, 153 * BLOCK)])


def test_repeated_blocks_are_counted_and_skipped(bundle, signal, clean):
    """A block delivered twice (DMA re-fire) is dropped on its second arrival; no sample is lost or
    doubled, so every decision stays valid and equal to the clean stream's."""
    cfg = bundle.cfg
    blocks = inject_faults(ArraySource(signal, cfg.fs, block=BLOCK).blocks(), repeat=[40, 41, 200])
    decisions, summary, _ = _stream(bundle, blocks)
    assert summary["faults"]["repeated_blocks"] == 3 and summary["faults"]["gaps"] == 0
    assert summary["samples"] == signal.size
    check_fault_contract(cfg, decisions, summary, clean, [])
    assert len(decisions) == len(clean) and summary["invalid_decisions"] == 0


def test_a_stale_block_from_the_past_is_skipped(bundle, signal, clean):
    """A block whose sequence number went backwards (a late duplicate) is treated as a repeat."""
    cfg = bundle.cfg

    def late(blocks):
        held = None
        for block in blocks:
            yield block
            if block.seq == 50:
                held = block
            if block.seq == 55:
                yield held

    decisions, summary, _ = _stream(bundle, late(ArraySource(signal, cfg.fs, block=BLOCK).blocks()))
    assert summary["faults"]["repeated_blocks"] == 1
    check_fault_contract(cfg, decisions, summary, clean, [])


def test_a_stalled_source_is_counted_and_loses_nothing(bundle, signal, clean):
    """No block for five periods, then the stream resumes with no sequence gap."""
    cfg = bundle.cfg
    now = [0.0]
    period = BLOCK / cfg.fs

    def arriving(blocks):
        for block in blocks:
            now[0] += period * (5.0 if block.seq in (80, 81) else 1.0)
            yield block

    blocks = arriving(ArraySource(signal, cfg.fs, block=BLOCK).blocks())
    decisions, summary, _ = _stream(bundle, blocks, clock=lambda: now[0])
    assert summary["faults"]["stalls"] == 2
    assert summary["faults"]["longest_stall_s"] == pytest.approx(5 * period)
    check_fault_contract(cfg, decisions, summary, clean, [])


def test_a_stall_that_loses_samples_is_a_gap(bundle, signal, clean):
    """A stall during which the DMA overran (blocks lost): counted as a stall and as a gap."""
    cfg = bundle.cfg
    now = [0.0]
    period = BLOCK / cfg.fs

    def arriving(blocks):
        for block in blocks:
            now[0] += period * (4.0 if block.seq == 120 else 1.0)
            yield block

    blocks = arriving(inject_faults(ArraySource(signal, cfg.fs, block=BLOCK).blocks(), drop=[117, 118, 119]))
    decisions, summary, _ = _stream(bundle, blocks, clock=lambda: now[0])
    faults = summary["faults"]
    assert faults["stalls"] == 1 and faults["gaps"] == 1 and faults["dropped_blocks"] == 3
    check_fault_contract(cfg, decisions, summary, clean, [(117 * BLOCK, 120 * BLOCK)])


def test_single_sample_blocks_with_a_nan(bundle, signal, clean):
    """Blocks of one sample each (a sample-by-sample ISR): same decisions, the NaN still counted."""
    cfg = bundle.cfg
    n = 3 * cfg.window_samples  # 30000 one-sample blocks keep the test quick
    part = signal[:n]
    blocks = inject_faults(ArraySource(part, cfg.fs, block=1).blocks(), nan=[12345])
    decisions, summary, _ = _stream(bundle, blocks)
    assert summary["faults"]["nonfinite_samples"] == 1 and summary["samples"] == n
    assert summary["timing"]["blocks"] == n
    reference = [d for d in clean if d.sample_index <= n]
    assert [d.sample_index for d in decisions] == [d.sample_index for d in reference]
    check_fault_contract(cfg, decisions, summary, clean, [(12345, 12346)])


@pytest.mark.parametrize("extra", [1, 5000, 9887])
def test_a_source_that_ends_mid_window(bundle, signal, clean, extra):
    """The stream stops part-way into a window: no decision and no event from the partial
    window, every decision before it as in the full stream, the loop ends normally."""
    cfg = bundle.cfg
    span = (cfg.n_frames - 1) * cfg.hop + cfg.nperseg  # samples one decision's frames cover
    n = 2 * EVERY * cfg.hop + span + extra  # the third decision's window, then `extra` more
    decisions, summary, rt = _stream(bundle, ArraySource(signal[:n], cfg.fs, block=BLOCK).blocks())
    assert summary["samples"] == n
    complete = [d for d in clean if d.sample_index <= n]
    assert [d.sample_index for d in decisions] == [d.sample_index for d in complete]
    assert all(d.window_start >= 0 and d.sample_index <= n for d in decisions)
    check_fault_contract(cfg, decisions, summary, clean, [])
    assert summary["faults"] == {**summary["faults"], "gaps": 0, "invalid_decisions": 0}


def test_a_source_that_ends_before_the_first_window(bundle, signal):
    decisions, summary, _ = _stream(bundle, ArraySource(signal[:5000], bundle.cfg.fs, block=BLOCK).blocks())
    assert decisions == [] and summary["decisions"] == 0 and summary["events"] == []
    assert summary["state"] == "unknown"
    assert summary["no_decision"] == f"no decision: 5000 samples, a window needs {bundle.cfg.window_samples}"


class _PanickingModel:
    """The real model, except that it is certain of the last class whenever its image contains a
    frame of silence: what a model may well do with the zeros a fault is replaced by."""

    def __init__(self, interp, cfg):
        self.interp = interp
        self.silent_column = dsp.frame_features(np.zeros((1, cfg.nperseg), np.float32), cfg)[0]

    def run(self, image):
        columns = np.asarray(image)[..., 0].T  # (n_frames, n_freq)
        if np.any(np.all(np.isclose(columns, self.silent_column, atol=1e-4), axis=1)):
            return np.eye(2, dtype=np.float32)[1]
        return self.interp.run(image)


def test_invalid_decisions_never_raise_an_event_even_when_the_model_panics(bundle, signal):
    cfg = bundle.cfg
    policy = DecisionPolicy(every_frames=EVERY, smooth=2, agree=2, min_dwell=1)
    faulty = _replace_blocks(ArraySource(signal, cfg.fs, block=BLOCK).blocks(), set(range(100, 140)),
                             lambda s: np.full_like(s, np.nan))
    decisions, summary, _ = _stream(bundle, faulty, policy=policy,
                                    interpreter=lambda interp: _PanickingModel(interp, cfg))
    panicked = [d for d in decisions if d.probabilities[1] == 1.0]
    assert len(panicked) >= 3 and not any(d.valid for d in panicked)
    # The state may fall back to unknown during the dropout, never to the class the model panics to.
    assert bundle.classes[1] not in [e["to"] for e in summary["events"]]
    # Control: the same silence as valid samples (a sensor that reads zero) does raise the alarm.
    silent = _replace_blocks(ArraySource(signal, cfg.fs, block=BLOCK).blocks(), set(range(100, 140)),
                             np.zeros_like)
    _, control, _ = _stream(bundle, silent, policy=policy, interpreter=lambda interp: _PanickingModel(interp, cfg))
    assert control["events"] and control["events"][0]["to"] == bundle.classes[1]


def test_the_loop_survives_every_fault_at_once(bundle, signal, clean):
    """NaN, Inf, a gap, repeats and a stale block in one stream: all counted, contract kept."""
    cfg = bundle.cfg

    def stale(blocks):
        for block in blocks:
            yield block
            if block.seq == 250:
                yield Block(240, block.samples, 240 * BLOCK)

    blocks = stale(inject_faults(ArraySource(signal, cfg.fs, block=BLOCK).blocks(), nan=[30], inf=[90],
                                 drop=[160, 161], repeat=[200]))
    decisions, summary, _ = _stream(bundle, blocks)
    faults = summary["faults"]
    assert (faults["nonfinite_samples"], faults["gaps"], faults["dropped_blocks"], faults["repeated_blocks"]) \
        == (2, 1, 2, 2)
    spans = [(30 * BLOCK + 128, 30 * BLOCK + 129), (90 * BLOCK + 128, 90 * BLOCK + 129),
             (160 * BLOCK, 162 * BLOCK)]
    check_fault_contract(cfg, decisions, summary, clean, spans)
