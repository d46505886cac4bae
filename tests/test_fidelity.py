"""The device's declared ADC and DSP in the bundle, the q15 golden vectors there, the DSP memory in the
footprint and fit check, the ADC in the streaming runtime, and the `edgecnn fidelity` report.

Real bundles (``tiny_run_dir`` exported with ``--dsp cmsis-q15``, ``tiny_bundle`` without a declaration,
``trained_bundle`` for the report), real interpreters, real CMSIS-DSP kernels.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgecnn.errors import BundleError
from export.bundle import GOLDEN_Q15_FILE, load_bundle
from tests.util import run_cli, write_resealed

pytest.importorskip("cmsisdsp", reason="the CMSIS-DSP backends need the cmsisdsp package")

from firmware_sim.adc import ADC  # noqa: E402
from firmware_sim.dsp_backends import DeviceDSP, backend_spectrogram, get_backend, working_memory_bytes  # noqa: E402

DEVICE_ADC = ADC(full_scale=8.0, bits=14, units="g", noise_lsb=0.0, seed=0)


@pytest.fixture(scope="module")
def q15_bundle(tiny_run_dir, tmp_path_factory):
    """``tiny_run_dir`` exported declaring a +/-8 g 14-bit ADC and the cmsis-q15 backend."""
    from export.writer import export_bundle

    out = tmp_path_factory.mktemp("q15_bundle_parent") / "bundle"
    return export_bundle(tiny_run_dir, out, formats="tflite_int8,tflite_float32", quiet=True,
                         dsp="cmsis-q15", adc=DEVICE_ADC)


def _edit_manifest(src, dst, edit):
    shutil.copytree(src, dst)
    manifest = json.loads((dst / "manifest.json").read_text())
    edit(manifest)
    write_resealed(dst, manifest)  # an edit, so the digest and the header that embeds it follow
    return dst


# The manifest's device section ---------------------------------------------------------------
def test_device_section_round_trips_through_the_manifest(q15_bundle):
    from export.footprint import device_buffers

    bundle = load_bundle(q15_bundle)
    assert bundle.device == {"dsp": "cmsis-q15", "adc": DEVICE_ADC.to_dict(), "golden_q15": GOLDEN_Q15_FILE}
    device = DeviceDSP.resolve(bundle.device)
    assert (device.name, device.origin) == ("cmsis-q15", "bundle")
    assert device.adc.to_dict() == DEVICE_ADC.to_dict()
    assert bundle.manifest["files"][GOLDEN_Q15_FILE]["role"] == "golden_q15"
    # The footprint counts the declared backend: int16 ring, q15 buffers, its tables in flash.
    buffers = bundle.footprint["device_buffers"]
    assert buffers == device_buffers(bundle.cfg, dsp="cmsis-q15")
    memory = working_memory_bytes("cmsis-q15", bundle.cfg)
    assert buffers["dsp_backend"] == "cmsis-q15"
    # two int16 DMA half-buffers + an int16 history of one frame and a block
    assert buffers["ring_buffer_bytes"] == 2 * 256 * 2 + (bundle.cfg.nperseg + 256) * 2
    assert buffers["stft_scratch_bytes"] == memory["ram_total"]
    # the same total the device side checks a part against
    from firmware_sim.profiles import runtime_buffer_bytes
    assert buffers["total_bytes"] == sum(runtime_buffer_bytes(bundle.cfg, block=256, dsp="cmsis-q15").values())
    assert buffers["dsp_tables_flash_bytes"] == memory["flash_total"] == 33888
    assert set(buffers["dsp_working_memory"]) == {"numpy", "cmsis-f32", "cmsis-q15"}


def test_bundles_without_a_device_section_still_load_and_run_the_float_dsp(tiny_bundle, tmp_path):
    bundle = load_bundle(tiny_bundle)
    assert bundle.device is None and "device" not in bundle.manifest
    device = DeviceDSP.resolve(bundle.device)
    assert (device.name, device.adc, device.origin) == ("numpy", None, "default")
    # An older manifest, written before the per-backend memory existed, loads too.
    old = _edit_manifest(tiny_bundle, tmp_path / "old", lambda m: m["footprint"]["device_buffers"].pop(
        "dsp_working_memory", None))
    assert load_bundle(old).device is None
    # --dsp overrides the backend; cmsis-q15 without a declared converter gets the default ADC.
    q15 = DeviceDSP.resolve(None, "cmsis-q15")
    assert (q15.origin, q15.adc.to_dict()) == ("option", ADC().to_dict())


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["device"].update(dsp="cmsis-q31"), r"device: dsp 'cmsis-q31' is not a known backend"),
    (lambda m: m["device"]["adc"].update(bits=20), r"device: adc: ADC bits=20 must be an integer in \[2, 16\]"),
    (lambda m: m["device"].update(golden_q15="other.npz"), r"golden_q15 file 'other.npz' is not listed"),
    (lambda m: m["device"].update(sensor="x"), r"device: unknown keys \['sensor'\]"),
    (lambda m: m.update(device=[1]), r"device: expected an object, got list"),
])
def test_a_bad_device_section_is_one_bundle_error(q15_bundle, tmp_path, edit, message):
    bad = _edit_manifest(q15_bundle, tmp_path / "bad", edit)
    with pytest.raises(BundleError, match=message):
        load_bundle(bad)


# q15 golden vectors ------------------------------------------------------------------------
def test_q15_golden_vectors_reproduce_from_the_bundle_alone(q15_bundle, tmp_path):
    from export.golden import check_golden_vectors

    bundle = load_bundle(q15_bundle)
    path = bundle.path / bundle.device["golden_q15"]
    assert check_golden_vectors(path) == []
    with np.load(path) as data:
        g = {k: data[k] for k in data.files}
    entry = bundle.model("tflite", "int8")
    # The file speaks the bundle's language: its ADC, its DSP config, its int8 input quantisation.
    assert json.loads(str(g["adc_json"])) == bundle.device["adc"]
    assert json.loads(str(g["config_json"]))["norm_mean"] == list(bundle.cfg.norm_mean)
    assert (float(g["input_scale"]), int(g["input_zero_point"])) == (entry.input.scale, entry.input.zero_point)
    np.testing.assert_array_equal(g["input_int8"], entry.input.quantize(g["feature"]))
    # Its ADC samples are the float golden windows through the declared converter.
    np.testing.assert_array_equal(g["adc_samples"], ADC.from_dict(bundle.device["adc"]).to_counts(
        bundle.golden()["windows"]))
    # The feature column is column 0 of the q15 backend's image of the same window.
    image = backend_spectrogram(g["adc_samples"], bundle.cfg, DeviceDSP.resolve(bundle.device).backend())
    from edgecnn.dsp import transform_magnitudes

    np.testing.assert_allclose(g["feature"], transform_magnitudes(image, bundle.cfg)[:, :, 0], rtol=1e-6)
    # Tampering with the file is caught when the bundle loads.
    copy = tmp_path / "tampered"
    shutil.copytree(q15_bundle, copy)
    raw = bytearray((copy / GOLDEN_Q15_FILE).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (copy / GOLDEN_Q15_FILE).write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="golden_q15.npz: sha256 does not match"):
        load_bundle(copy)


# Memory in the fit check -------------------------------------------------------------------
def test_fit_check_counts_the_dsp_buffers_and_tables():
    from edgecnn.config import SpectrogramConfig
    from firmware_sim import profiles

    cfg = SpectrogramConfig()
    float_port = profiles.runtime_buffer_bytes(cfg, block=256)
    q15 = profiles.runtime_buffer_bytes(cfg, block=256, dsp="cmsis-q15")
    assert q15["dsp_cmsis-q15_working"] == working_memory_bytes("cmsis-q15", cfg)["ram_total"] == 1818
    assert q15["sample_history"] == (256 + 256) * 2 and float_port["sample_history"] == (256 + 256) * 4
    tables = profiles.dsp_flash_bytes(cfg, "cmsis-q15")
    assert sum(tables.values()) == 33888 and profiles.dsp_flash_bytes(cfg, "numpy") == {}
    part = profiles.DeviceProfile(name="tight", flash_bytes=50_000, ram_bytes=64 * 1024, clock_hz=80e6)
    assert profiles.check_fit(part, flash_bytes=20_000, arena_bytes=16_000, buffers=q15).fits
    fit = profiles.check_fit(part, flash_bytes=20_000, arena_bytes=16_000, buffers=q15, tables=tables)
    assert not fit.fits and fit.flash_needed == 20_000 + 33888
    assert "DSP tables 33,888" in fit.describe() and fit.to_json()["flash_tables"] == tables


# The ADC in the streaming runtime -----------------------------------------------------------
class _Recorder:
    """A real interpreter that also keeps every image it was given."""

    def __init__(self, inner):
        self.inner, self.images = inner, []

    def run(self, image):
        self.images.append(image.copy())
        return self.inner.run(image)


@pytest.mark.parametrize("name", ["numpy", "cmsis-q15"])
def test_stream_runtime_quantises_through_the_adc_and_counts_saturation(tiny_bundle, name):
    from edgecnn import synth
    from edgecnn.dsp import transform_magnitudes
    from firmware_sim.interpreters import open_interpreter
    from firmware_sim.runtime import StreamRuntime
    from firmware_sim.sources import ArraySource

    bundle = load_bundle(tiny_bundle)
    cfg = bundle.cfg
    signal = synth.render_stream(4.0, seed=21, fs=cfg.fs).astype(np.float32)
    adc = ADC(full_scale=float(np.abs(signal).max()) * 1.5, bits=16)
    clip_at = 30_000
    signal[clip_at:clip_at + 7] = adc.full_scale * np.array([1.2, -1.3, 2.0, 1.0001, -1.0001, 5.0, -9.0])
    device = DeviceDSP(name=name, adc=adc, origin="option")
    backend = device.backend()
    with open_interpreter("litert", bundle) as interp:
        recorder = _Recorder(interp)
        rt = StreamRuntime(cfg, bundle.classes, recorder, magnitude_fn=backend, adc=backend.adc)
        decisions = []
        summary = rt.run(ArraySource(signal, cfg.fs, block=200).blocks(), decisions.append)
    assert summary["faults"]["saturated_samples"] == 7 == backend.adc.saturated
    assert backend.adc.samples == signal.size
    # Decisions whose window holds a clipped sample are invalid, the others valid.
    for d in decisions:
        touches = d.window_start <= clip_at + 6 and clip_at < d.window_start + cfg.window_samples
        assert d.valid is not touches
    assert any(not d.valid for d in decisions) and decisions[-1].valid
    # What the device classified is the batch backend's image of the converter's counts (clipped at the rails).
    counts = ADC.from_dict(adc.to_dict()).to_counts(signal)
    for d, image in zip(decisions, recorder.images):
        mag = backend_spectrogram(counts[d.window_start:d.window_start + cfg.window_samples], cfg,
                                  get_backend(name, adc=ADC.from_dict(adc.to_dict())))
        np.testing.assert_allclose(image[:, :, 0], transform_magnitudes(mag, cfg), rtol=1e-6, atol=1e-5)


def test_stream_cli_uses_the_declared_device_unless_dsp_is_given(q15_bundle, tiny_bundle, tmp_path):
    runs = {"declared": (q15_bundle, []), "override": (q15_bundle, ["--dsp", "numpy"]),
            "undeclared": (tiny_bundle, [])}
    out = {}
    for key, (bundle, extra) in runs.items():
        path = tmp_path / f"{key}.json"
        proc = run_cli("stream", str(bundle), "--source", "synth:duration=2,seed=4", "--quiet", "--json",
                       str(path), *extra)
        assert proc.returncode == 0, proc.stderr
        out[key] = json.loads(path.read_text())
        assert f"DSP {out[key]['dsp']} ({out[key]['device']['from']})" in proc.stdout
    assert out["declared"]["dsp"] == "cmsis-q15"
    assert out["declared"]["device"] == {"backend": "cmsis-q15", "adc": DEVICE_ADC.to_dict(), "from": "bundle"}
    # The sensor's converter stays when --dsp changes the backend.
    assert out["override"]["device"] == {"backend": "numpy", "adc": DEVICE_ADC.to_dict(), "from": "option"}
    assert out["undeclared"]["device"] == {"backend": "numpy", "adc": None, "from": "default"}
    assert out["declared"]["decisions"] == out["undeclared"]["decisions"] > 0


def test_stream_profile_check_counts_the_declared_dsp(q15_bundle, tmp_path):
    profile = tmp_path / "part.json"
    bundle = load_bundle(q15_bundle)
    model = bundle.model("tflite", "int8").bytes
    # Flash for the model but not for the q15 tables: refused, with the figures.
    profile.write_text(json.dumps({"name": "tight", "flash_bytes": model + 1000, "ram_bytes": 1 << 20,
                                   "clock_hz": 8e7}))
    path = tmp_path / "fit.json"
    proc = run_cli("stream", str(q15_bundle), "--source", "synth:duration=1", "--quiet", "--profile", str(profile),
                   "--json", str(path))
    assert proc.returncode == 1, proc.stderr
    fit = json.loads(path.read_text())
    assert fit["dsp"] == "cmsis-q15" and not fit["fit"]["fits"]
    assert sum(fit["fit"]["flash_tables"].values()) == 33888
    assert fit["fit"]["buffers"]["dsp_cmsis-q15_working"] == 1818


# The fidelity report -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def spectrogram_bundle(trained_data, tmp_path_factory):
    """The edge CNN trained on spectrograms (the CMSIS backends' feature) of the trained data."""
    from edgecnn.dataset import load_windows
    from edgecnn.train import default_config, train_run
    from export.writer import export_bundle

    root = tmp_path_factory.mktemp("spectrogram_run")
    train_run(load_windows(trained_data), default_config("edge", feature="spectrogram"), out=root / "run",
              arch="edge", epochs=15, seed=0, quiet=True, use_cache=False, data_source=str(trained_data))
    return export_bundle(root / "run", root / "bundle", quiet=True)


def test_fidelity_refuses_an_envelope_bundle(trained_bundle, trained_data):
    proc = run_cli("fidelity", str(trained_bundle), "--data", str(trained_data), "--quiet")
    assert proc.returncode == 2
    assert "this bundle's feature is 'envelope'" in proc.stderr and "Traceback" not in proc.stderr


def test_fidelity_command_on_a_trained_bundle(spectrogram_bundle, trained_data, tmp_path):
    trained_bundle = spectrogram_bundle
    out, plot = tmp_path / "fidelity.json", tmp_path / "fidelity.png"
    proc = run_cli("fidelity", str(trained_bundle), "--data", str(trained_data), "--json", str(out),
                   "--plot", str(plot), "--max-drop", "0.02", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    rows = result["backends"]
    assert list(rows) == ["numpy", "cmsis-f32", "cmsis-q15"]
    assert result["n_windows"] > 50 and "test recordings" in result["selection"]
    # Each row records the backend and converter it ran; the bundle declares none, so only q15 has an ADC.
    assert rows["numpy"]["device"] == {"backend": "numpy", "adc": None, "from": "option"}
    assert rows["cmsis-q15"]["device"]["adc"] == ADC().to_dict()
    # Per-frame error against the float definition: numpy exact, f32 at float32 rounding, q15 above 40 dB median.
    assert rows["numpy"]["frames"]["snr_db_min"] is None  # +inf (exact frames): JSON null
    assert rows["cmsis-f32"]["frames"]["max_rel_error"] <= 1e-5
    assert rows["cmsis-q15"]["frames"]["snr_db_median"] >= 40
    assert rows["cmsis-q15"]["frames"]["frames"] == result["n_windows"] * 44
    # The numpy backend without an ADC is the float definition: the same predictions as the int8 reference.
    assert rows["numpy"]["agreement_with_int8_on_float_features"] == 1.0
    assert rows["numpy"]["int8_accuracy"] == result["int8_on_float_features"]["accuracy"]
    base = result["int8_on_float_features"]["accuracy"]
    for row in rows.values():
        assert base - row["int8_accuracy"] <= 0.02 and row["agreement_with_float_pipeline"] >= 0.95
    assert result["gate"]["passed"]
    curve = result["q15_snr_curve"]["points"]
    assert [p["level_dbfs"] for p in curve] == list(range(-40, 1, 5))
    assert all(p["snr_db_median"] >= 40 for p in curve)
    assert [s["backend"] for s in result["q15_error_budget"]["stages"]][-1] == "cmplx_mag_q15"
    assert {s["arithmetic"] for s in result["q15_arithmetic"]} >= {"integer", "float"}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "cmsis-q15" in proc.stdout and "q15 SNR vs level" in proc.stdout


def test_fidelity_command_errors_are_one_line(trained_bundle, trained_data):
    proc = run_cli("fidelity", str(trained_bundle), "--data", str(trained_data), "--backends", "numpy,cmsis-q31",
                   "--quiet", "--no-curve")
    assert proc.returncode == 2
    assert "unknown DSP backends ['cmsis-q31']" in proc.stderr and "Traceback" not in proc.stderr


def test_export_cli_declares_the_device(tiny_run_dir, tmp_path):
    out = tmp_path / "bundle"
    proc = run_cli("export", str(tiny_run_dir), "--out", str(out), "--formats", "tflite_int8", "--dsp", "cmsis-q15",
                   "--adc-full-scale", "8", "--adc-bits", "14")
    assert proc.returncode == 0, proc.stderr
    assert "device: DSP cmsis-q15 (bundle), ADC +/-8 g 14-bit" in proc.stdout
    assert load_bundle(out).device == {"dsp": "cmsis-q15", "adc": DEVICE_ADC.to_dict(), "golden_q15": GOLDEN_Q15_FILE}
    # An ADC alone declares the converter in front of the float definition; no q15 golden vectors then.
    from export.writer import device_section

    cfg = load_bundle(out).cfg
    assert device_section(None, DEVICE_ADC, cfg) == {"dsp": "numpy", "adc": DEVICE_ADC.to_dict()}
    assert device_section(None, None, cfg) is None
    assert device_section("cmsis-q15", None, cfg)["adc"] == ADC().to_dict()
    proc = run_cli("export", str(tiny_run_dir), "--out", str(tmp_path / "bad"), "--adc-full-scale", "-1", "--quiet")
    assert proc.returncode == 2 and "ADC full_scale=-1.0 must be a finite number > 0" in proc.stderr
    assert not (tmp_path / "bad").exists()


def test_fidelity_report_imports_no_tensorflow(q15_bundle, tmp_path):
    import subprocess
    import sys

    from edgecnn import synth
    from tests.util import subprocess_env

    data = synth.write_pickle(tmp_path / "few.pkl", synth.generate(n=8, seed=9, n_recordings=4))
    code = ("import sys, json; from edgecnn.cli import main; "
            f"rc = main(['fidelity', {str(q15_bundle)!r}, '--data', {str(data)!r}, '--backends', 'cmsis-q15', "
            f"'--no-curve', '--quiet', '--json', {str(tmp_path / 'f.json')!r}]); "
            "heavy = [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules]; "
            "print(json.dumps({'rc': rc, 'heavy': heavy}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "heavy": []}
    report = json.loads((tmp_path / "f.json").read_text())
    assert report["backends"]["cmsis-q15"]["device"]["from"] == "option"
    assert report["declared_device"]["dsp"] == "cmsis-q15" and report["n_windows"] == 8
