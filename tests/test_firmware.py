"""The generated C device library (export.firmware), proven on the host.

The library is compiled with the system gcc (``-std=c99 -Wall -Wextra -Werror``) against
CMSIS-DSP's C sources and driven through ctypes: its float features equal ``edgecnn.dsp`` (the
golden vectors), its int8 input tensor is the bundle's quantiser's, and on a 60 s synthetic fault
onset its decisions and events equal firmware_sim's. Bundles here are made with an explicit DSP
config (``transform="log"``), never the default.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgecnn.config import SpectrogramConfig
from edgecnn.errors import BundleError, ConfigError
from export import firmware, firmware_build, firmware_measure
from export.bundle import load_bundle
from tests.firmware_util import HostDSP, require_tools, window_features
from tests.util import run_cli

#: Float features: the float32 FFTs against numpy's float64 ones. Spectrogram magnitudes are held to
#: 1e-5 of their frame's largest magnitude (float32 rounding is relative to the frame's energy, not
#: to a weak bin). Features (log dB, normalised) are held to a fraction of the int8 input's step,
#: the unit that matters for the model: a bin 75 dB below its column's peak carries ~1e-3 dB of
#: float32 error, i.e. about 2e-5 of the image's largest |feature| but under 1 % of a step.
MAGNITUDE_RTOL = 1e-5
FEATURE_STEPS = firmware_measure.FEATURE_TOL_STEPS


def _host_dsp(bundle_dir, tmp_path_factory) -> HostDSP:
    require_tools(mcu=False)
    bundle = load_bundle(bundle_dir)
    lib = firmware_build.build_host_library(bundle_dir / firmware.FIRMWARE_DIR,
                                            tmp_path_factory.mktemp("fw_host") / "libedgecnn.so")
    return HostDSP(lib, bundle.cfg, len(bundle.classes))


@pytest.fixture(scope="module")
def host_dsp(tiny_bundle, tmp_path_factory):
    return _host_dsp(tiny_bundle, tmp_path_factory)


def test_export_writes_firmware_listed_and_sealed(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    assert bundle.manifest["firmware"] == {"folder": "firmware", "generator": firmware.GENERATOR_VERSION}
    generated = bundle.manifest["generated"]
    names = {name for name in generated if name.startswith("firmware/")}
    assert {"firmware/edgecnn_config.h", "firmware/edgecnn_dsp.c", "firmware/edgecnn_dsp.h",
            "firmware/edgecnn_model.cc", "firmware/edgecnn_main.cc"} <= names
    assert generated["firmware/edgecnn_config.h"]["role"] == firmware.CONFIG_ROLE
    header = (tiny_bundle / "firmware" / "edgecnn_config.h").read_text()
    assert f'#define EDGECNN_BUNDLE_DIGEST "{bundle.digest}"' in header
    # the resolver holds exactly the model's operators
    model_cc = (tiny_bundle / "firmware" / "edgecnn_model.cc").read_text()
    assert model_cc.count("g_resolver.Add") == len(set(firmware._model_operators(
        bundle.model_path(bundle.model()).read_bytes())))


def test_a_header_from_another_bundle_is_refused(tiny_bundle, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    header = copy / "firmware" / "edgecnn_config.h"
    header.write_text(header.read_text().replace(manifest["bundle_digest"], "0" * 64))
    from export.bundle import file_record

    manifest["generated"]["firmware/edgecnn_config.h"].update(file_record(header))
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="embeds bundle digest 0000000000000000"):
        load_bundle(copy)


def test_cli_writes_the_same_sources_and_they_compile_warning_free(tiny_bundle, tmp_path):
    require_tools(mcu=False)
    out = tmp_path / "fw"
    proc = run_cli("firmware", str(tiny_bundle), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    for path in (tiny_bundle / "firmware").iterdir():
        assert (out / path.name).read_text() == path.read_text(), path.name
    firmware_build.syntax_check(out)  # gcc -fsyntax-only -std=c99 -Wall -Wextra -Werror
    (out / "notes.txt").write_text("mine")
    proc = run_cli("firmware", str(tiny_bundle), "--out", str(out))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "--force" in proc.stderr


def test_generator_refuses_what_it_cannot_express(tiny_bundle):
    inputs = firmware.inputs_from_bundle(load_bundle(tiny_bundle))
    doc = dict(inputs.dsp_doc)
    with pytest.raises(ConfigError, match="does not know DSP parameter 'feature_kind'"):
        firmware.check_expressible(inputs.cfg, {**doc, "feature_kind": "x"})
    cfg = SpectrogramConfig(nperseg=200, noverlap=20, transform="log")
    with pytest.raises(ConfigError, match="nperseg in"):
        firmware.check_expressible(cfg, cfg.to_dict())
    cfg = SpectrogramConfig(transform="log", feature="envelope", envelope_nfft=300)
    with pytest.raises(ConfigError, match="envelope_nfft in"):
        firmware.check_expressible(cfg, cfg.to_dict())
    with pytest.raises(ConfigError, match="declares the cmsis-q15 device DSP; .* float32 path only"):
        firmware.check_expressible(inputs.cfg, doc, {"dsp": "cmsis-q15", "adc": None})
    firmware.check_expressible(inputs.cfg, doc, {"dsp": "cmsis-f32", "adc": None})
    with pytest.raises(ConfigError, match="no TFLM kernel registration for operator 999"):
        firmware.resolver_methods((3, 999))



def test_quantizer_thresholds_equal_the_bundle_quantizer(tiny_bundle, host_dsp):
    spec = load_bundle(tiny_bundle).model().input
    thresholds = firmware.quantizer_thresholds(spec)
    # at each threshold and one float32 step below it, and across the whole range
    edges = np.concatenate([thresholds, np.nextafter(thresholds, np.float32(-np.inf))])
    spread = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * np.float32(200 * spec.scale)
    values = np.concatenate([edges, spread, np.float32([0.0, -0.0, 1e30, -1e30])]).astype(np.float32)
    np.testing.assert_array_equal(host_dsp.quantize(values), spec.quantize(values))
    np.testing.assert_array_equal(firmware._from_ordered(np.int64(firmware._ordered(np.float32(-2.5)))),
                                  np.float32(-2.5))


@pytest.mark.parametrize("which", ["spectrogram", "envelope"])
def test_host_features_equal_the_golden_vectors(which, request, tmp_path_factory):
    bundle_dir = request.getfixturevalue("tiny_bundle" if which == "spectrogram" else "tiny_envelope_bundle")
    bundle = load_bundle(bundle_dir)
    assert bundle.cfg.feature == which
    host_dsp = _host_dsp(bundle_dir, tmp_path_factory)
    golden, cfg, spec = bundle.golden(), bundle.cfg, bundle.model().input
    mean, std = np.asarray(cfg.norm_mean)[:, None], np.asarray(cfg.norm_std)[:, None]
    tol = FEATURE_STEPS * spec.scale
    boundary_flips = 0
    for i, window in enumerate(golden["windows"]):
        features, tensor = window_features(host_dsp, window)
        expected = golden["features"][i][..., 0]
        assert features.shape == expected.shape == cfg.input_shape[:2]
        assert np.max(np.abs(features - expected)) <= tol
        if cfg.level == "none":  # back to magnitudes (log dB): each within 1e-5 of its column's peak
            magnitude = 10.0 ** ((features.astype(np.float64) * std + mean) / 20.0)
            reference = golden["magnitude"][i].astype(np.float64)
            assert np.all(np.abs(magnitude - reference) <= MAGNITUDE_RTOL * reference.max(axis=0, keepdims=True))
        # the int8 tensor is the bundle's quantiser of the C features, byte for byte ...
        np.testing.assert_array_equal(tensor, spec.quantize(features))
        # ... and equals golden's, except where golden's feature lies within the float32 tolerance
        # of a rounding boundary (then one LSB either way is the same feature)
        differ = tensor != golden["input_int8"][i][..., 0]
        straddles = spec.quantize(expected - tol) != spec.quantize(expected + tol)
        assert np.all(straddles[differ]), "an int8 input differs away from a rounding boundary"
        assert np.all(np.abs(tensor.astype(int) - golden["input_int8"][i][..., 0]) <= 1)
        boundary_flips += int(differ.sum())
    assert boundary_flips <= 0.001 * golden["input_int8"].size


@pytest.mark.parametrize("which", ["spectrogram", "envelope"])
def test_host_stream_decisions_equal_firmware_sim(which, request, tmp_path_factory):
    """60 s of a machine whose fault starts at 30 s: the C DSP and decider (with tflite-micro on
    the C's int8 image) against firmware_sim's StreamRuntime with the tflm interpreter. The
    spectrogram bundle is a trained edge CNN (the onset must raise an event); the envelope one the
    2-epoch tiny CNN (its decisions and probabilities must still be the same)."""
    require_tools(mcu=False)
    trained_fw_bundle = request.getfixturevalue("trained_fw_bundle" if which == "spectrogram"
                                                else "tiny_envelope_bundle")
    from tflite_micro import runtime as tflm

    from edgecnn import synth
    from firmware_sim.interpreters import open_interpreter
    from firmware_sim.runtime import StreamRuntime
    from firmware_sim.sources import Block

    bundle = load_bundle(trained_fw_bundle)
    lib = firmware_build.build_host_library(trained_fw_bundle / "firmware",
                                            tmp_path_factory.mktemp("fw_trained") / "libedgecnn.so")
    dsp = HostDSP(lib, bundle.cfg, len(bundle.classes))
    signal = synth.render_stream(60.0, seed=1, fault_onset_s=30.0, severity=3.0)
    block = 256

    class Recording:  # firmware_sim's interpreter, keeping each decision's float image
        def __init__(self, inner):
            self.inner, self.images = inner, []

        def run(self, image):
            self.images.append(np.array(image)[..., 0])
            return self.inner.run(image)

    recorder = Recording(open_interpreter("tflm", bundle))
    py = StreamRuntime(bundle.cfg, bundle.classes, recorder)
    py_decisions = []
    for seq, start in enumerate(range(0, signal.size, block)):
        py_decisions += py.process(Block(seq, signal[start:start + block], start))

    model = tflm.Interpreter.from_file(str(bundle.model_path(bundle.model())))
    c_decisions, c_events = [], []
    for start in range(0, signal.size, block):
        chunk = signal[start:start + block]
        used = 0
        while used < chunk.size:
            n, _, due = dsp.push(chunk[used:])
            used += n
            if due:
                tensor = dsp.input_tensor()
                model.set_input(tensor[None, :, :, None], 0)
                model.invoke()
                probabilities, event = dsp.decide(model.get_output(0), dsp.window_end())
                c_decisions.append((dsp.window_end(), probabilities, tensor))
                if event is not None:
                    c_events.append((event.decision, event.sample_index, bundle.classes[event.previous],
                                     bundle.classes[event.state]))
    assert len(c_decisions) == len(py_decisions) > 200
    assert [d.sample_index for d in py_decisions] == [at for at, _, _ in c_decisions]
    # The int8 images: the same bytes, except where firmware_sim's float64 feature lies within the
    # float32 tolerance of a rounding boundary; then the output may move by one LSB, never more.
    spec, out_spec = bundle.model().input, bundle.model().output
    tol = FEATURE_STEPS * spec.scale
    flips = 0
    for (_, probabilities, tensor), decision, image in zip(c_decisions, py_decisions, recorder.images):
        differ = tensor != spec.quantize(image)
        if not differ.any():
            np.testing.assert_array_equal(probabilities, decision.probabilities)
            continue
        flips += 1
        assert np.all((spec.quantize(image - tol) != spec.quantize(image + tol))[differ])
        assert np.max(np.abs(probabilities - decision.probabilities)) <= out_spec.scale * 1.0001
    assert flips <= 0.05 * len(c_decisions)
    py_events = [(e.decision, e.sample_index, e.previous, e.state) for e in py.events]
    assert c_events == py_events
    if which == "spectrogram":
        assert any(e[3] != bundle.classes[0] for e in py_events), "the onset raised no event: a weak test"


def test_a_bundle_the_generator_cannot_express(tmp_path):
    """Export goes on without firmware/ and says why; `edgecnn firmware` refuses it in one line."""
    from export.writer import export_bundle
    from tests.util import write_tiny_run

    cfg = SpectrogramConfig(nperseg=200, noverlap=20, transform="log")  # no arm_rfft_fast_f32 of 200 points
    bundle_dir = export_bundle(write_tiny_run(tmp_path / "run", cfg), tmp_path / "bundle", quiet=True)
    doc = load_bundle(bundle_dir).manifest["firmware"]
    assert doc["folder"] is None and "nperseg in" in doc["reason"]
    assert not (bundle_dir / "firmware").exists()
    proc = run_cli("firmware", str(bundle_dir), "--out", str(tmp_path / "fw"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "nperseg in" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "fw").exists()
