"""Device-side parts in isolation: sources, decisions, timing, device profiles."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from edgecnn import synth
from edgecnn.config import SpectrogramConfig
from edgecnn.errors import ConfigError, InputError
from firmware_sim import profiles
from firmware_sim.decisions import Decider, DecisionPolicy, parse_cadence
from firmware_sim.sources import (
    ArraySource,
    RawSource,
    SynthSource,
    SynthStreamSpec,
    inject_faults,
    open_source,
    paced,
)
from firmware_sim.timing import StreamTiming

CFG = SpectrogramConfig()


# Sources ---------------------------------------------------------------------------------------
def test_synth_source_is_the_generator_stream_in_blocks():
    source = SynthSource("synth:duration=2,onset=1,seed=5", block=256)
    blocks = list(source.blocks())
    assert [b.seq for b in blocks] == list(range(len(blocks)))
    assert [b.t_sample_index for b in blocks] == [256 * i for i in range(len(blocks))]
    assert all(b.samples.dtype == np.float32 for b in blocks)
    assert blocks[-1].samples.size == 25600 - 256 * (len(blocks) - 1)
    joined = np.concatenate([b.samples for b in blocks])
    np.testing.assert_array_equal(joined, synth.render_stream(2.0, seed=5, fault_onset_s=1.0))


def test_synth_source_renders_lazily_in_segments_of_one_signal(monkeypatch):
    import firmware_sim.sources as sources

    source = SynthSource("synth:duration=1.7,seed=2", block=1000)
    pieces = source.segments()
    first = next(pieces)  # rendered on demand: one segment, not the whole stream
    assert first.size == int(sources.SYNTH_SEGMENT_S * 12800) == 12800
    assert [p.size for p in pieces] == [8960]
    monkeypatch.setattr(sources, "SYNTH_SEGMENT_S", 0.5)
    assert [p.size for p in source.segments()] == [6400, 6400, 6400, 2560]
    joined = np.concatenate([b.samples for b in source.blocks()])
    assert joined.size == len(source) == 21760
    np.testing.assert_array_equal(joined, synth.render_stream(1.7, seed=2))


@pytest.mark.parametrize("spec, message", [
    ("synth:duration=abc", r"duration='abc' is not a valid float"),
    ("synth:speed=3", r"item 'speed=3' must be key=value with key in"),
    ("synth:duration=10,onset=12", r"onset=12.0 must be in \[0, duration=10.0\)"),
    ("synth:duration=-1", r"duration=-1.0 must be > 0 s"),
])
def test_synth_spec_errors(spec, message):
    with pytest.raises(ConfigError, match=message):
        SynthStreamSpec.parse(spec)


def test_raw_int16_source_scales_and_blocks():
    values = np.array([0, 16384, -32768, 32767, 100], dtype="<i2")
    source = RawSource(io.BytesIO(values.tobytes() + b"\x01"), 12800.0, dtype="int16", scale=2.0, block=2)
    blocks = list(source.blocks())
    assert [b.samples.tolist() for b in blocks] == [[0.0, 32768.0], [-65536.0, 65534.0], [200.0]]
    assert [b.t_sample_index for b in blocks] == [0, 2, 4]
    assert source.trailing_bytes == 1 and source.full_scale == 65534.0


def test_raw_float32_source_and_open_source_on_stdin():
    values = np.arange(5, dtype="<f4") / 3
    source = open_source("-", 12800.0, raw_dtype="float32", block=4, stdin=io.BytesIO(values.tobytes()))
    np.testing.assert_array_equal(np.concatenate([b.samples for b in source.blocks()]), values)
    with pytest.raises(InputError, match="stdin stream at 12000 Hz cannot be resampled on the fly"):
        open_source("-", 12800.0, source_fs=12000.0, stdin=io.BytesIO())
    with pytest.raises(InputError, match="neither 'synth\\[:spec\\]', '-' \\(stdin\\) nor an existing path"):
        open_source("/nonexistent/file.wav", 12800.0)


def test_paced_delivers_blocks_at_the_sensor_rate():
    now = [100.0]
    waits = []

    def sleep(seconds):
        waits.append(seconds)
        now[0] += seconds

    blocks = list(paced(ArraySource(np.zeros(1000), 1000.0, block=250).blocks(), 1000.0,
                        clock=lambda: now[0], sleep=sleep))
    assert len(blocks) == 4
    assert waits == pytest.approx([0.25, 0.25, 0.25, 0.25])


def test_inject_faults_drops_repeats_and_corrupts():
    source = ArraySource(np.zeros(10), 1.0, block=2)
    blocks = list(inject_faults(source.blocks(), drop=[1], repeat=[2], nan=[3]))
    assert [b.seq for b in blocks] == [0, 2, 2, 3, 4]
    assert np.isnan(blocks[3].samples).sum() == 1


# Decisions -------------------------------------------------------------------------------------
def test_parse_cadence():
    assert parse_cadence("0.25s", CFG) == 14
    assert parse_cadence("250ms", CFG) == 14
    assert parse_cadence("7f", CFG) == 7 == parse_cadence("7", CFG)
    with pytest.raises(ConfigError, match="must look like 0.25s, 250ms or 14f"):
        parse_cadence("quarter", CFG)
    with pytest.raises(ConfigError, match="shorter than one frame"):
        parse_cadence("0.001s", CFG)


def _feed(decider, p_b_values, valid=None):
    out = []
    for i, p in enumerate(p_b_values):
        ok = True if valid is None else valid[i]
        out.append(decider.update([1 - p, p], window_start=i * 100, sample_index=i * 100 + 10000, valid=ok))
    return out


def test_hysteresis_smoothing_and_dwell():
    decider = Decider(["A", "B"], 12800.0, DecisionPolicy(smooth=2, on=0.7, off=0.3, min_dwell=3))
    results = _feed(decider, [0.9, 0.2, 0.9, 0.9, 0.6, 0.5, 0.2, 0.1])
    states = [d.state for d, _ in results]
    events = [(i, e.previous, e.state) for i, (_, e) in enumerate(results) if e is not None]
    # 0.9 alone: history not full; mean(0.9, 0.2) = 0.55 stays; mean(0.9, 0.9) switches at index 3
    # (dwell 4 >= 3); 0.75, 0.55 hold B; 0.35 is above off; 0.15 <= 0.3 but dwell counts from the switch.
    assert events == [(3, "A", "B"), (7, "B", "A")]
    assert states == [0, 0, 0, 1, 1, 1, 1, 0]
    assert results[3][1].sample_index == 10300 and results[3][1].time_s == pytest.approx(10300 / 12800)
    np.testing.assert_allclose(results[4][0].smoothed, [0.25, 0.75], rtol=1e-6)


def test_min_dwell_holds_a_new_state():
    decider = Decider(["A", "B"], 12800.0, DecisionPolicy(smooth=1, min_dwell=3))
    results = _feed(decider, [0.1, 0.1, 0.9, 0.1, 0.1, 0.1])
    assert [d.state for d, _ in results] == [0, 0, 1, 1, 1, 0]


def test_invalid_decisions_never_raise_events_nor_smooth():
    decider = Decider(["A", "B"], 12800.0, DecisionPolicy(smooth=1, min_dwell=0))
    results = _feed(decider, [0.99, 0.99, 0.99], valid=[False, False, True])
    assert [e is not None for _, e in results] == [False, False, True]
    assert [d.valid for d, _ in results] == [False, False, True]
    assert results[0][0].smoothed is None and decider.invalid == 2
    decision, event = decider.update([np.nan, 0.5], window_start=0, sample_index=1)
    assert not decision.valid and event is None and decision.reason == "non-finite probabilities"
    decider.reset()
    assert (decider.state, decider.decisions, decider.invalid) == (0, 0, 0)


def test_decision_policy_errors():
    with pytest.raises(ConfigError, match=r"thresholds off=0.8 < on=0.7 must lie in \[0, 1\]"):
        DecisionPolicy(on=0.7, off=0.8)
    with pytest.raises(ConfigError, match="smooth=0 must be an integer >= 1"):
        DecisionPolicy(smooth=0)
    with pytest.raises(ConfigError, match="initial=2 is not a class index"):
        Decider(["A", "B"], 1.0, DecisionPolicy(initial=2))


# Timing ----------------------------------------------------------------------------------------
def test_timing_load_percentiles_and_misses():
    timing = StreamTiming(12800.0)
    period = 256 / 12800.0  # 20 ms
    for i in range(100):
        timing.record_block(256, 0.001 if i < 98 else 0.030)  # two blocks miss their deadline
    timing.record_decision(256 - 100, 0.002)
    s = timing.summary()
    assert s["blocks"] == 100 and s["deadline_misses"] == 2
    assert s["cpu_load"] == pytest.approx((98 * 0.001 + 2 * 0.030) / (100 * period), rel=1e-6)
    assert s["realtime_factor"] == pytest.approx(1 / s["cpu_load"], rel=1e-3)
    assert s["block_ms_p50"] == pytest.approx(1.0, rel=0.02)
    assert s["block_ms_p99"] == pytest.approx(30.0, rel=0.02)
    assert s["block_ms_worst"] == 30.0
    assert s["decision_latency_ms_worst"] == pytest.approx(156 / 12.8 + 2.0, rel=1e-6)


def test_timing_without_decisions_has_no_latency_figures():
    timing = StreamTiming(12800.0)
    timing.record_block(256, 0.001)
    s = timing.summary()
    assert s["decision_latency_ms_p50"] is None and s["decision_latency_ms_worst"] is None
    # the block figures are still there: 1 ms of work per 20 ms block
    assert s["blocks"] == 1 and s["deadline_misses"] == 0
    assert s["cpu_load"] == pytest.approx(0.001 / (256 / 12800.0), rel=1e-6)
    assert json.loads(json.dumps(s, allow_nan=False)) == s  # strict JSON: None, never NaN


# Profiles --------------------------------------------------------------------------------------
def test_builtin_profiles():
    m4 = profiles.load_profile("cortex-m4")
    assert (m4.flash_bytes, m4.ram_bytes, m4.clock_hz) == (262144, 65536, 80e6)
    m7 = profiles.load_profile("cortex-m7")
    assert (m7.flash_bytes, m7.ram_bytes, m7.clock_hz) == (1048576, 524288, 480e6)
    assert "raspberry-pi-4" in profiles.BUILTIN


def test_user_profile_from_json_and_its_errors(tmp_path):
    path = tmp_path / "part.json"
    path.write_text(json.dumps({"name": "tiny", "flash_bytes": 32768, "ram_bytes": 8192, "clock_hz": 48e6}))
    part = profiles.load_profile(path)
    assert part.name == "tiny" and part.ram_bytes == 8192
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="part.json: not valid JSON"):
        profiles.load_profile(path)
    path.write_text(json.dumps({"name": "x", "flash": 1}))
    expected = r"unknown keys \['flash'\], missing keys \['clock_hz', 'flash_bytes', 'ram_bytes'\]"
    with pytest.raises(ConfigError, match=expected):
        profiles.load_profile(path)
    path.write_text(json.dumps({"name": "x", "flash_bytes": -1, "ram_bytes": 1, "clock_hz": 1}))
    with pytest.raises(ConfigError, match="flash_bytes=-1 must be an integer > 0"):
        profiles.load_profile(path)
    with pytest.raises(ConfigError, match="neither a built-in .* nor a JSON file"):
        profiles.load_profile("cortex-m99")


def test_fit_check_figures_and_verdict():
    buffers = profiles.runtime_buffer_bytes(CFG, block=256, input_itemsize=1)
    assert buffers["rolling_image"] == 129 * 44 and buffers["dma_buffers"] == 1024
    m4 = profiles.load_profile("cortex-m4")
    small = profiles.check_fit(m4, flash_bytes=100_000, arena_bytes=30_000, buffers=buffers)
    assert small.fits and small.ram_needed == 30_000 + sum(buffers.values())
    big = profiles.check_fit(m4, flash_bytes=2_900_000, arena_bytes=181_632, buffers=buffers)
    assert not big.fits
    assert "cortex-m4: does NOT fit: flash 2,900,000 of 262,144 bytes" in big.describe()
    assert big.to_json()["fits"] is False


# Stream plot -------------------------------------------------------------------------------------
def test_stream_plot_marks_the_true_onset_when_known(tmp_path, monkeypatch):
    from firmware_sim import report
    from firmware_sim.sources import SynthSource

    figures = []

    def keep(fig, path, **kwargs):
        figures.append([[(line.get_xdata()[0], line.get_label()) for line in ax.get_lines()
                         if line.get_linestyle() == ":"] for ax in fig.axes])
        path.write_bytes(b"png")
        return path

    monkeypatch.setattr(report, "save_figure", keep)
    trace = report.Trace()
    for block in SynthSource("synth:duration=2,onset=1.25", 12800.0).blocks():
        trace.add_block(block)
    report.plot_stream(tmp_path / "a.png", trace, [], fs=12800.0, classes=["A", "B"], target=1, onset_s=1.25)
    report.plot_stream(tmp_path / "b.png", trace, [], fs=12800.0, classes=["A", "B"], target=1)
    signal_axis, probability_axis = figures[0]
    assert [x for x, _ in signal_axis] == [1.25]
    assert probability_axis == [(1.25, "true onset")]
    assert figures[1] == [[], []]  # no onset known (a file, stdin): nothing drawn
