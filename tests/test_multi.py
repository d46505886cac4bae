"""The multi-sensor runtime gives every sensor exactly what a single-sensor runtime gives it."""

from __future__ import annotations

import numpy as np
import pytest

from edgecnn.errors import InputError
from edgecnn.synth import render_stream
from export.bundle import load_bundle
from firmware_sim.adc import ADC
from firmware_sim.decisions import DecisionPolicy
from firmware_sim.dsp_backends import get_backend
from firmware_sim.interpreters import open_interpreter
from firmware_sim.runtime import StreamRuntime
from firmware_sim.sources import ArraySource, Block, inject_faults, rotated_blocks
from firmware_sim.streaming_stft import StreamingSTFT

N_SENSORS = 5
BLOCK = 256


@pytest.fixture(scope="module")
def bundle(trained_bundle):
    return load_bundle(trained_bundle)


@pytest.fixture(scope="module")
def signals():
    """Five different machines: healthy, faulty from the start, and faults at different onsets."""
    out = [render_stream(8.0, seed=seed, fault_onset_s=onset, faulty=faulty)
           for seed, onset, faulty in ((1, None, False), (2, None, True), (3, 3.0, False), (4, 5.0, False),
                                       (5, 1.0, False))]
    return np.stack(out).astype(np.float32)


def _single(bundle, signal, policy, runtime="litert", phase=0):
    with open_interpreter(runtime, bundle) as interp:
        rt = StreamRuntime(bundle.cfg, bundle.classes, interp, policy=policy, phase=phase)
        decisions = []
        summary = rt.run(ArraySource(signal, bundle.cfg.fs, block=BLOCK).blocks(), decisions.append)
    return decisions, summary


def _multi(bundle, signals, policy, runtime="litert", max_batch=None, block=BLOCK, stagger=False):
    with open_interpreter(runtime, bundle) as interp:
        rt = StreamRuntime(bundle.cfg, bundle.classes, interp, n_sensors=signals.shape[0], policy=policy,
                           max_batch=max_batch, stagger=stagger)
        per_sensor = [[] for _ in range(signals.shape[0])]
        blocks = (Block(i // block, signals[:, i:i + block], i) for i in range(0, signals.shape[1], block))
        summary = rt.run(blocks, lambda decision: per_sensor[decision.sensor].append(decision))
    return per_sensor, summary


def _same(a, b):
    assert [d.index for d in a] == [d.index for d in b]
    assert [(d.window_start, d.sample_index, d.state, d.valid) for d in a] == \
        [(d.window_start, d.sample_index, d.state, d.valid) for d in b]
    np.testing.assert_array_equal(np.stack([d.probabilities for d in a]), np.stack([d.probabilities for d in b]))


@pytest.mark.parametrize("runtime, max_batch", [("litert", None), ("litert", 2), ("onnxruntime", None)])
def test_each_sensor_gets_exactly_its_single_sensor_decisions(bundle, signals, runtime, max_batch):
    policy = DecisionPolicy(every_frames=14)
    multi, summary = _multi(bundle, signals, policy, runtime, max_batch)
    events = []
    for sensor, signal in enumerate(signals):
        single, single_summary = _single(bundle, signal, policy, runtime)
        _same(multi[sensor], single)
        events += [{"sensor": sensor, **e} for e in single_summary["events"]]
        assert summary["states"][sensor] == single_summary["state"]
    assert sorted(summary["events"], key=lambda e: (e["sensor"], e["decision"])) == events
    assert events, "the faulty machines must raise at least one event"
    assert summary["decisions"] == sum(len(d) for d in multi)


@pytest.mark.parametrize("block", [BLOCK, 1000])
def test_staggered_sensors_take_their_single_sensor_decisions_at_their_phase(bundle, signals, block):
    """Staggered, sensor i decides from frame n_frames + i % every on: what a lone StreamRuntime with
    that phase decides, image for image; each decision frame carries only its group's inferences."""
    policy = DecisionPolicy(every_frames=3)
    multi, summary = _multi(bundle, signals, policy, block=block, stagger=True)
    starts = set()
    for sensor, signal in enumerate(signals):
        single, single_summary = _single(bundle, signal, policy, phase=sensor % 3)
        _same(multi[sensor], single)
        assert summary["states"][sensor] == single_summary["state"]
        starts.add(multi[sensor][0].sample_index)
    assert len(starts) == min(N_SENSORS, 3)  # the groups decide at different frames


def test_odd_block_sizes_and_a_faulty_sensor(bundle, signals):
    """Blocks of 1000 (several frames, decision points inside blocks) and NaNs on one sensor only."""
    policy = DecisionPolicy(every_frames=7)
    corrupted = signals.copy()
    corrupted[2, 30000:30010] = np.nan
    multi, summary = _multi(bundle, corrupted, policy, block=1000)
    for sensor in range(N_SENSORS):
        with open_interpreter("litert", bundle) as interp:
            rt = StreamRuntime(bundle.cfg, bundle.classes, interp, policy=policy)
            single = []
            rt.run(ArraySource(corrupted[sensor], bundle.cfg.fs, block=1000).blocks(), single.append)
        _same(multi[sensor], single)
        assert summary["faults"][sensor]["invalid_decisions"] == rt.faults.invalid_decisions
    assert summary["faults"][2]["nonfinite_samples"] == 10
    assert summary["faults"][2]["invalid_decisions"] > 0
    assert all(summary["faults"][s]["invalid_decisions"] == 0 for s in (0, 1, 3, 4))


def _blocks(x: np.ndarray, **faults):
    """Blocks of BLOCK samples of one signal (n,) or a fleet's (N, n), with faults injected."""
    n = x.shape[-1]
    return inject_faults((Block(i // BLOCK, x[..., i:i + BLOCK], i) for i in range(0, n, BLOCK)), **faults)


@pytest.mark.parametrize("dsp, which", [("numpy", "trained_bundle"), ("numpy", "trained_fw_bundle"),
                                        ("cmsis-q15", "trained_fw_bundle")])
def test_a_fleet_through_gaps_and_an_adc_gives_each_sensor_its_lone_decisions(signals, dsp, which, request):
    """One runtime for one or N sensors: a fleet through the device's ADC (int16 counts) and DSP
    backend, with a bridged gap (2 blocks dropped), a restart (61 blocks, longer than a window), a
    repeated block and a NaN on sensor 0, gives every sensor exactly what a lone runtime gives it
    on that sensor's signal with the same faults: decisions, states and fault counters. The
    envelope bundle (the default feature) and a log-spectrogram one (the q15 backend's)."""
    bundle = load_bundle(request.getfixturevalue(which))
    policy = DecisionPolicy(every_frames=7)
    faults = {"drop": [40, 41, *range(200, 261)], "repeat": [90]}

    def runtime(interp, n_sensors):
        adc = ADC(full_scale=8.0)
        return StreamRuntime(bundle.cfg, bundle.classes, interp, n_sensors=n_sensors, policy=policy, adc=adc,
                             magnitude_fn=get_backend(dsp, adc=adc))

    with open_interpreter("litert", bundle) as interp:
        fleet = runtime(interp, N_SENSORS)
        per_sensor = [[] for _ in range(N_SENSORS)]
        summary = fleet.run(_blocks(signals, nan=[130], **faults), lambda d: per_sensor[d.sensor].append(d))
        for sensor in range(N_SENSORS):
            lone, single = runtime(interp, 1), []
            lone_summary = lone.run(_blocks(signals[sensor], nan=[130] if sensor == 0 else [], **faults),
                                    single.append)
            _same(per_sensor[sensor], single)
            assert summary["faults"][sensor] == lone_summary["faults"]
            assert summary["states"][sensor] == lone_summary["state"]
    counts = summary["faults"]
    assert counts[0]["nonfinite_samples"] == 1 and all(c["nonfinite_samples"] == 0 for c in counts[1:])
    assert all(c["gaps"] == 2 and c["restarts"] == 1 and c["repeated_blocks"] == 1 and c["filled_samples"] == 512
               for c in counts)
    assert all(c["invalid_decisions"] > 0 for c in counts)  # the filled gap's windows


def test_multi_stft_images_equal_single_stft_images(signals, bundle):
    cfg = bundle.cfg
    multi = StreamingSTFT(cfg, n_sensors=N_SENSORS)
    singles = [StreamingSTFT(cfg) for _ in range(N_SENSORS)]
    rng = np.random.default_rng(0)
    pos = 0
    images = np.zeros((N_SENSORS, *cfg.input_shape[:2]), dtype=np.float32)
    while pos < 30000:
        size = int(rng.integers(1, 3000))
        columns = multi.push(signals[:, pos:pos + size])
        for i, s in enumerate(singles):
            np.testing.assert_array_equal(s.push(signals[i, pos:pos + size]), columns[i])
        pos += size
        if multi.ready:
            multi.images_into(images)
            for i, s in enumerate(singles):
                np.testing.assert_array_equal(images[i], s.image()[:, :, 0])
                np.testing.assert_array_equal(multi.image(i), s.image())


def test_rotated_blocks_give_each_sensor_its_own_phase():
    signal = np.arange(10, dtype=np.float32)
    blocks = list(rotated_blocks(signal, 2, block=4))
    assert [(b.seq, b.t_sample_index) for b in blocks] == [(0, 0), (1, 4), (2, 8)]
    np.testing.assert_array_equal(np.concatenate([b.samples for b in blocks], axis=1),
                                  [np.arange(10), (np.arange(10) + 5) % 10])


def test_wrong_block_shape_is_a_clear_error(bundle):
    with open_interpreter("litert", bundle) as interp:
        rt = StreamRuntime(bundle.cfg, bundle.classes, interp, n_sensors=3)
        with pytest.raises(InputError, match=r"expected \(3, samples\)"):
            rt.process(Block(0, np.zeros((2, 256), dtype=np.float32), 0))


def test_cli_sensors_runs_every_sensor_and_writes_json(trained_bundle, tmp_path):
    import json

    from tests.util import run_cli

    out, events, decisions = tmp_path / "multi.json", tmp_path / "events.jsonl", tmp_path / "decisions.jsonl"
    proc = run_cli("stream", str(trained_bundle), "--sensors", "4", "--source",
                   "synth:duration=12,onset=4,seed=2,severity=3", "--quiet", "--json", str(out),
                   "--events", str(events), "--decisions", str(decisions))
    assert proc.returncode == 0, proc.stderr
    assert "sensors: 4 x 12.00 s" in proc.stdout
    result = json.loads(out.read_text())
    assert result["sensors"] == 4 and len(result["states"]) == len(result["faults"]) == 4
    # 12 s at 12800 Hz: 685 frames, decisions every 14 frames after the first 44, for each sensor.
    assert result["decisions"] == 4 * (1 + (685 - 44) // 14)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["sensor"], e["decision"]) for e in lines] == \
        [(e["sensor"], e["decision"]) for e in result["events"]]
    taken = [json.loads(line) for line in decisions.read_text().splitlines()]
    assert len(taken) == result["decisions"]
    for sensor in range(4):  # each sensor's decisions in order, its last state the summary's
        own = [d for d in taken if d["sensor"] == sensor]
        assert [d["decision"] for d in own] == list(range(len(own)))
        assert own[-1]["state"] == result["states"][sensor]


def test_cli_sensors_refuses_stdin(trained_bundle):
    from tests.util import run_cli

    proc = run_cli("stream", str(trained_bundle), "--sensors", "3", "--source", "-")
    assert proc.returncode == 2 and "does not take stdin" in proc.stderr


def test_interpreter_quantisation_equals_the_manifest_rule(bundle):
    """The device loop's in-place quantisation is TensorSpec.quantize exactly, halves included."""
    with open_interpreter("litert", bundle) as interp:
        spec = interp.entry.input
        rng = np.random.default_rng(5)
        x = (rng.standard_normal((1, *bundle.cfg.input_shape)) * 40 * spec.scale).astype(np.float32)
        x.flat[:200] = ((np.arange(200) - 100 + 0.5) * spec.scale).astype(np.float32)  # near .5 steps
        x.flat[200:210] = [1e9, -1e9, 0.0, -0.0, spec.scale / 2, -spec.scale / 2, 127 * spec.scale,
                           -128 * spec.scale, 3.5 * spec.scale, -3.5 * spec.scale]
        np.testing.assert_array_equal(interp._quantize(x), spec.quantize(x))
        np.testing.assert_array_equal(interp._quantize(x[:, ::-1].copy()), spec.quantize(x[:, ::-1]))


def test_a_synthetic_fleet_is_many_machines_each_its_own():
    from firmware_sim.sources import SynthSource, SynthStreamSpec, synth_fleet

    spec = SynthStreamSpec.parse("synth:duration=2,onset=1,seed=5")
    specs, blocks = synth_fleet(spec, 4, 12800.0, block=1000)
    assert [s.seed for s in specs] == [5, 6, 7, 8]
    assert [s.onset is None for s in specs] == [False, True, False, True]
    assert all(0.5 <= s.onset <= 1.5 for s in specs[::2]) and specs[0].onset != specs[2].onset
    signals = np.concatenate([b.samples for b in blocks], axis=1)
    assert signals.shape == (4, 25600)
    for s, row in zip(specs, signals):  # each row is that machine's own stream, sample for sample
        np.testing.assert_array_equal(row, np.concatenate([b.samples for b in SynthSource(s).blocks()]))
    assert not np.allclose(signals[1], signals[3])
