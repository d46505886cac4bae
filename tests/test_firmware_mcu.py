"""The generated firmware on an emulated Cortex-M4 (QEMU mps2-an386, semihosting).

The library, TFLM with CMSIS-NN kernels and the bundle's model, cross-compiled with Debian's
arm-none-eabi toolchain: golden windows in, float features, int8 input and int8 output compared
with Python (tflite-micro's runtime for the outputs); a 60 s stream's decisions and events equal
firmware_sim's. ``make firmware-test`` runs these (the TFLM build is cached under build/firmware).
"""

from __future__ import annotations

import numpy as np
import pytest

from export import firmware, firmware_measure
from export.bundle import load_bundle
from tests.firmware_util import require_tools


@pytest.fixture(scope="module")
def bundle(trained_fw_bundle):
    require_tools(mcu=True)
    return load_bundle(trained_fw_bundle)


@pytest.fixture(scope="module")
def image(bundle):
    return firmware_measure.build_image(bundle, bundle.path / firmware.FIRMWARE_DIR)


@pytest.mark.parametrize("which", ["spectrogram", "envelope"])
def test_golden_windows_on_the_emulated_mcu(which, request):
    require_tools(mcu=True)
    bundle = load_bundle(request.getfixturevalue("trained_fw_bundle" if which == "spectrogram"
                                                 else "tiny_envelope_bundle"))
    assert bundle.cfg.feature == which
    result = firmware_measure.measure(bundle, bundle.path / firmware.FIRMWARE_DIR)
    golden = result["golden"]
    assert golden["windows"] == len(bundle.golden()["windows"])
    assert golden["features_max_error_steps"] <= firmware_measure.FEATURE_TOL_STEPS
    assert golden["features_max_error_rel"] <= 1e-4
    assert golden["input_int8_equal_quantiser"], "the board's int8 input is not the bundle's quantiser's"
    assert golden["output_int8_equal_tflite_micro"], "CMSIS-NN on the board differs from tflite-micro"
    # golden's float64 features round differently only at a rounding boundary (a handful at most)
    assert golden["input_int8_differences_from_golden"] <= 0.001 * bundle.golden()["input_int8"].size
    if golden["input_int8_differences_from_golden"] == 0:
        assert golden["output_int8_equal_golden"]
    assert golden["all_equal"]
    # footprint from the link and the instruction counter
    assert result["flash_bytes"] > result["model_bytes"]
    assert result["ram_bytes"] > result["arena_bytes"] + result["dsp_state_bytes"]
    assert 0 < result["arena_used_bytes"] <= result["arena_bytes"]
    assert 1_000 < result["instructions_per_dsp_frame"] < result["instructions_per_inference"]
    path = firmware_measure.write_results(bundle.path, result)
    assert firmware_measure.read_results(bundle) == result and path.parent == bundle.path.parent


def test_stream_on_the_emulated_mcu_equals_firmware_sim(bundle, image):
    from edgecnn import synth
    from firmware_sim.decisions import state_name
    from firmware_sim.interpreters import open_interpreter
    from firmware_sim.runtime import StreamRuntime
    from firmware_sim.sources import Block

    signal = synth.render_stream(60.0, seed=1, fault_onset_s=30.0, severity=3.0)
    board = firmware_measure.run_stream(image, signal, args=("--block", "256"))
    assert board["digest"] == bundle.digest

    py = StreamRuntime(bundle.cfg, bundle.classes, open_interpreter("tflm", bundle))
    decisions = []
    for seq, start in enumerate(range(0, signal.size, 256)):
        decisions += py.process(Block(seq, signal[start:start + 256], start))
    assert len(board["decisions"]) == len(decisions) > 200
    assert board["decisions"] == [(d.index, d.sample_index, state_name(bundle.classes, d.state)) for d in decisions]
    expected = [(e.decision, e.sample_index, e.previous, e.state) for e in py.events]
    assert [e[:4] for e in board["events"]] == expected and expected
    # smoothed probabilities: equal, or one output LSB apart in one of the smoothed vectors where a
    # float32 feature rounded to the other side of an int8 boundary than firmware_sim's float64 one
    lsb = bundle.model().output.scale / py.policy.smooth
    np.testing.assert_allclose([e[4] for e in board["events"]], [e.smoothed for e in py.events], atol=lsb + 1e-6)
