"""DSP backends against the one float definition, on real CMSIS-DSP kernels (cmsisdsp).

Norm used for "relative": per frame, max |backend - reference| over bins divided by the frame's
max reference magnitude (the infinity norm), then the worst frame.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgecnn import dsp, synth
from edgecnn.config import SpectrogramConfig
from edgecnn.errors import ConfigError, InputError
from export.golden import check_golden_vectors, q15_golden_vectors, write_golden_vectors
from firmware_sim.adc import ADC
from firmware_sim.dsp_backends import (
    BACKENDS,
    Q15Backend,
    backend_spectrogram,
    get_backend,
    working_memory_bytes,
)
from firmware_sim.dsp_fidelity import (
    fidelity,
    frame_crest_factor_db,
    frame_snr_db,
    max_relative_error,
    q15_error_budget,
    scale_to_dbfs,
    snr_curve,
)

cmsisdsp = pytest.importorskip("cmsisdsp")

CFG = SpectrogramConfig()


@pytest.fixture(scope="module")
def vibration():
    """Synthetic vibration windows of both classes plus two-tone signals, float64."""
    windows = synth.generate(n=8, seed=11)["signal"].astype(np.float64)
    t = np.arange(CFG.window_samples) / CFG.fs
    tones = np.stack([np.sin(2 * np.pi * f * t + 0.4) + 0.3 * np.sin(2 * np.pi * 3.7 * f * t)
                      for f in (50.0, 1234.5, 6000.3)])
    return np.concatenate([windows, tones])


def test_registry_names_and_error_message():
    assert list(BACKENDS) == ["numpy", "cmsis-f32", "cmsis-q15"]
    for name in BACKENDS:
        assert get_backend(name).name == name
    known = r"unknown DSP backend 'fftw'; known backends: numpy, cmsis-f32, cmsis-q15"
    with pytest.raises(ConfigError, match=known):
        get_backend("fftw")
    with pytest.raises(ConfigError, match="unknown DSP backend 'q15'"):
        working_memory_bytes("q15", CFG)


def test_numpy_backend_is_the_definition(vibration):
    frames = np.lib.stride_tricks.sliding_window_view(vibration[0], CFG.nperseg)[:: CFG.hop]
    assert np.array_equal(get_backend("numpy")(frames, CFG), dsp.frame_magnitudes(frames, CFG))
    batch = backend_spectrogram(vibration, CFG, get_backend("numpy"))
    assert np.array_equal(batch, dsp.spectrogram(vibration, CFG))


def test_cmsis_f32_equals_numpy_to_1e5_relative(vibration):
    # DC offsets (gravity on a vertical axis, up to 10 g) that the detrend must remove in float32.
    for signals in (vibration, vibration + 1.0, vibration + 10.0):
        result = fidelity(get_backend("cmsis-f32"), signals, CFG)
        assert result.frames == len(signals) * CFG.n_frames
        assert result.max_rel_error <= 1e-5, result
    # Any leading shape, including one frame.
    frames = np.random.default_rng(1).normal(size=(2, 3, CFG.nperseg))
    out = get_backend("cmsis-f32")(frames, CFG)
    assert out.shape == (2, 3, CFG.n_freq) and out.dtype == np.float64
    ref = dsp.frame_magnitudes(frames, CFG)
    assert np.max(max_relative_error(out, ref)) <= 1e-5
    one = get_backend("cmsis-f32")(frames[0, 0], CFG)
    assert np.array_equal(one, out[0, 0])


@pytest.mark.parametrize("nperseg,window", [(64, "hann"), (512, ("tukey", 0.25))])
def test_cmsis_f32_other_lengths(vibration, nperseg, window):
    cfg = SpectrogramConfig(nperseg=nperseg, noverlap=nperseg // 8, window=window)
    assert fidelity(get_backend("cmsis-f32"), vibration[:2], cfg).max_rel_error <= 1e-5


def test_cmsis_q15_reaches_40_db_from_minus_30_to_0_dbfs(vibration):
    rows = snr_curve(vibration, CFG, levels_db=range(-30, 1, 5))
    for row in rows:
        # Every frame, not an average: the worst frame of every window at every level.
        assert row.snr_db_min >= 40.0, row
        assert row.frames == len(vibration) * CFG.n_frames


def test_block_floating_point_is_what_keeps_low_levels(vibration):
    without = snr_curve(vibration[:3], CFG, levels_db=[-30.0], block_floating_point=False)[0]
    with_bfp = snr_curve(vibration[:3], CFG, levels_db=[-30.0])[0]
    # arm_rfft_q15 divides by N: a -30 dBFS frame keeps few bits per bin unless pre-scaled.
    assert without.snr_db_median < 30.0 < 40.0 <= with_bfp.snr_db_min


def test_q15_error_budget_names_the_fft_as_the_main_loss(vibration):
    adc = ADC()
    windows = scale_to_dbfs(vibration[:4], -30.0, adc)
    rows = q15_error_budget(windows, CFG, adc)
    assert [r.backend for r in rows] == ["adc", "detrend+shift", "window_q15", "rfft_q15", "cmplx_mag_q15"]
    # Errors only accumulate stage after stage ...
    for before, after in zip(rows, rows[1:]):
        assert after.snr_db_pooled <= before.snr_db_pooled + 0.5
    # ... the whole-path row is the backend itself ...
    whole = fidelity(Q15Backend(adc), windows, CFG)
    assert rows[-1].snr_db_pooled == pytest.approx(whole.snr_db_pooled, abs=1e-9)
    # ... and arm_rfft_q15's 16-bit data path is the largest single loss.
    drops = [b.snr_db_pooled - a.snr_db_pooled for b, a in zip(rows, rows[1:])]
    assert int(np.argmax(drops)) == 2 and drops[2] > 6.0


def test_q15_stages_follow_the_cmsis_scaling(vibration):
    backend = Q15Backend()
    x = vibration[3] / np.abs(vibration[3]).max() * 0.02  # about -58 dBFS on +/-16 g
    counts = backend.counts(x[: CFG.nperseg])
    stages = backend.stages(counts, CFG)
    shift, scaled, windowed = int(stages.shift[0]), stages.scaled[0], stages.windowed[0]
    spectrum, magnitude = stages.spectrum[0], stages.magnitude[0]
    # Block floating point: the shifted frame uses the top half of q15.
    assert 16384 <= np.abs(scaled.astype(np.int32)).max() <= 32767
    assert shift > 5
    exact_scaled = (counts - counts.mean()) * 2.0**shift
    assert np.abs(scaled.astype(np.int64) - exact_scaled).max() <= 0.5 + 1e-9
    # arm_mult_q15 truncates the product: floor(a * b / 2**15).
    window_q15 = backend.window_q15(CFG).astype(np.int64)
    assert np.array_equal(windowed, (scaled.astype(np.int64) * window_q15) >> 15)
    # arm_rfft_q15 returns the whole complex spectrum divided by N, with a few LSB of rounding noise.
    exact = np.fft.fft(windowed.astype(np.float64)) / CFG.nperseg
    got = spectrum[0::2] + 1j * spectrum[1::2].astype(np.float64)
    assert spectrum.shape == (2 * CFG.nperseg,)
    error = np.abs(got - exact)[1:]
    assert np.linalg.norm(error) < 0.01 * np.linalg.norm(exact[1:])
    assert np.sqrt(np.mean(error**2)) < 4.0 and error.max() < 10.0
    # arm_cmplx_mag_q15 gives about floor(|Z| / 2) (2.14): below |Z| / 2 by 0 to 1 LSB (its square
    # root adds up to 0.0012 more), which is why to_units dequantises at m + 0.5.
    shortfall = np.abs(got[1:CFG.n_freq]) / 2 - magnitude[1:]
    assert shortfall.min() >= -1e-9 and shortfall.max() <= 1.002
    assert magnitude[0] == abs(int(windowed.astype(np.int32).sum())) // (2 * CFG.nperseg)
    # Frames run together give the same bits as one by one.
    many = backend.counts(x[: 3 * CFG.nperseg].reshape(3, CFG.nperseg))
    together = backend.stages(many, CFG)
    for i in range(3):
        alone = backend.stages(many[i], CFG)
        assert np.array_equal(alone.spectrum[0], together.spectrum[i])
        assert alone.shift[0] == together.shift[i]


def test_q15_headroom_for_full_scale_with_offset():
    adc = ADC(full_scale=1.0)
    frame = np.full(CFG.nperseg, -adc.max_units)
    frame[100:140] = adc.max_units  # rails to rails: |x - mean| exceeds full scale
    backend = Q15Backend(adc)
    assert backend.stages(backend.counts(frame), CFG).shift.tolist() == [-1]
    got = backend(frame, CFG)
    ref = dsp.frame_magnitudes(frame, CFG)
    assert frame_snr_db(got, ref) > 40.0


def test_q15_int16_frames_equal_float_frames_through_the_same_adc(vibration):
    adc = ADC(full_scale=32.0)
    frames = np.lib.stride_tricks.sliding_window_view(vibration[1], CFG.nperseg)[:: CFG.hop]
    backend = get_backend("cmsis-q15", adc=adc)
    from_floats = backend(frames, CFG)
    assert np.array_equal(backend(adc.to_counts(frames), CFG), from_floats)
    # The float backends read counts too once they know the ADC's units.
    numpy_counts = get_backend("numpy", adc=adc)(adc.to_counts(frames), CFG)
    assert np.array_equal(numpy_counts, dsp.frame_magnitudes(adc.to_units(adc.to_counts(frames)), CFG))


def test_batch_frames_equal_per_frame_calls(vibration):
    """Groundwork of streaming == batch: batch frame p is the backend on samples [p*hop, p*hop+N)."""
    for name in BACKENDS:
        backend = get_backend(name)
        image = backend_spectrogram(vibration[4], CFG, backend)
        assert image.shape == (CFG.n_freq, CFG.n_frames)
        for p in (0, 1, CFG.n_frames - 1):
            single = backend(vibration[4][p * CFG.hop: p * CFG.hop + CFG.nperseg], CFG)
            assert np.array_equal(image[:, p], single)


def test_batch_quantises_each_sample_once():
    adc = ADC(full_scale=1.0, noise_lsb=1.0, seed=5)
    signal = np.random.default_rng(2).normal(0, 0.5, CFG.window_samples)
    backend = get_backend("cmsis-q15", adc=adc)
    image = backend_spectrogram(signal, CFG, backend)
    assert adc.samples == CFG.window_samples
    clipped = int(np.count_nonzero(np.abs(signal) > 1.0))
    assert abs(adc.saturated - clipped) <= 5 and adc.saturated > 0
    # Same noise draws from the same seed: the batch result is reproducible.
    adc.reset()
    assert np.array_equal(backend_spectrogram(signal, CFG, backend), image)


def test_input_errors():
    with pytest.raises(InputError, match="last axis must be nperseg=256"):
        get_backend("cmsis-f32")(np.zeros((2, 100)), CFG)
    with pytest.raises(InputError, match="has no ADC"):
        get_backend("cmsis-f32")(np.zeros((1, 256), dtype=np.int16), CFG)
    with pytest.raises(InputError, match="at least nperseg=256"):
        backend_spectrogram(np.zeros(10), CFG, get_backend("numpy"))
    odd = SpectrogramConfig(nperseg=200, noverlap=20)
    with pytest.raises(ConfigError, match=r"cmsis-q15 backend needs nperseg a power of two in \[32, 8192\]"):
        get_backend("cmsis-q15")(np.zeros((1, 200)), odd)
    with pytest.raises(ConfigError, match=r"cmsis-f32 backend needs nperseg a power of two in \[32, 4096\]"):
        working_memory_bytes("cmsis-f32", odd)


def test_working_memory_matches_the_library_buffers():
    from cmsisdsp import datatype

    n = CFG.nperseg
    f32 = working_memory_bytes("cmsis-f32", CFG)
    q15 = working_memory_bytes("cmsis-q15", CFG)
    # Output buffers as CMSIS-DSP sizes them for a scalar Cortex-M (arch 1), and as the calls return.
    assert f32["fft_output"] == 4 * cmsisdsp.arm_rfft_output_buffer_size(datatype.F32, n, arch=1)
    assert q15["fft_output"] == 2 * cmsisdsp.arm_rfft_output_buffer_size(datatype.Q15, n, arch=1)
    stages = Q15Backend().stages(np.zeros(n, dtype=np.int16), CFG)
    assert q15["fft_output"] == stages.spectrum[0].nbytes and q15["frame_buffer"] == stages.windowed[0].nbytes
    assert q15["window_table"] == Q15Backend().window_q15(CFG).nbytes
    assert q15["ram_total"] < f32["ram_total"] < working_memory_bytes("numpy", CFG)["ram_total"]
    assert q15["fft_tables_trimmed"] < f32["fft_tables"] < q15["fft_tables"]
    for row in (f32, q15):
        buffers = ("frame_buffer", "fft_output", "magnitude", "fft_instance")
        assert row["ram_total"] == sum(row[k] for k in buffers)


def test_golden_vectors_reproduce(tmp_path, vibration):
    adc = ADC(full_scale=16.0)
    vectors = q15_golden_vectors(vibration[:3], CFG.with_normalisation(0.01, 0.02), adc, frame=2,
                             input_quantization=(0.05, -10))
    assert vectors["adc_samples"].dtype == np.int16
    assert vectors["adc_samples"].shape == (3, CFG.window_samples)
    assert vectors["spectrum_q15"].shape == (3, 2 * CFG.nperseg) and vectors["spectrum_q15"].dtype == np.int16
    assert vectors["feature"].shape == (3, CFG.n_freq) and vectors["input_int8"].dtype == np.int8
    # The stored stages are those the backend computes for that frame.
    start = 2 * CFG.hop
    backend = Q15Backend(adc)
    column = backend(vectors["adc_samples"][:, start:start + CFG.nperseg], CFG)
    assert np.allclose(vectors["magnitude"], column, rtol=1e-6)
    expected_feature = dsp.transform_magnitudes(column, CFG.with_normalisation(0.01, 0.02), freq_axis=-1)
    assert np.array_equal(vectors["feature"], expected_feature)
    path = write_golden_vectors(tmp_path / "golden" / "q15.npz", vectors)
    assert sorted(p.name for p in path.parent.iterdir()) == ["q15.npz"]
    assert check_golden_vectors(path) == []
    # A firmware that differs in one q15 bin is caught, and named.
    with np.load(path) as data:
        tampered = {k: data[k] for k in data.files}
    tampered["spectrum_q15"] = tampered["spectrum_q15"].copy()
    tampered["spectrum_q15"][1, 40] += 1
    bad = write_golden_vectors(tmp_path / "bad.npz", tampered)
    assert check_golden_vectors(bad) == ["spectrum_q15"]
    with pytest.raises(InputError, match="cannot read golden vectors"):
        check_golden_vectors(tmp_path / "missing.npz")


def test_backends_never_import_tensorflow():
    code = (
        "import sys, numpy as np\n"
        "from edgecnn.config import SpectrogramConfig\n"
        "from firmware_sim.dsp_backends import BACKENDS, get_backend\n"
        "import firmware_sim.adc, firmware_sim.dsp_fidelity, export.golden\n"
        "for name in BACKENDS: get_backend(name)(np.ones((2, 256)), SpectrogramConfig())\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx'))\n"
        "print(bad)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(root)}, check=True)
    assert out.stdout.strip() == "[]"


DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_real_cwru_recordings_at_their_own_level():
    """CWRU drive-end recordings (12 kHz, resampled to 12.8 kHz) through a +/-16 g ADC."""
    from scipy.signal import resample_poly

    names = ["normal_0hp_097_part1.npz", "IR021_0hp_209.npz", "OR021at6_1hp_235.npz"]
    paths = [DATA / "cwru" / name for name in names]
    if not all(p.exists() for p in paths):
        pytest.skip(f"real CWRU recordings not found under {DATA / 'cwru'}")
    windows = []
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            assert float(data["fs"]) == 12000.0
            x = resample_poly(data["signal"].astype(np.float64), 16, 15)
        windows.append(x[: 3 * CFG.window_samples].reshape(3, CFG.window_samples))
    windows = np.concatenate(windows)
    assert fidelity(get_backend("cmsis-f32"), windows, CFG).max_rel_error <= 1e-5
    adc = ADC(full_scale=16.0)
    q15 = fidelity(get_backend("cmsis-q15", adc=adc), windows, CFG)
    assert adc.saturated == 0
    assert q15.snr_db_pooled >= 40.0 and q15.snr_db_median >= 44.0, q15
    # The worst frames are the impulsive ones: SNR falls with the frame's crest factor.
    frames = np.lib.stride_tricks.sliding_window_view(windows, CFG.nperseg, axis=-1)[:, :: CFG.hop]
    frames = frames.reshape(-1, CFG.nperseg)
    snr = frame_snr_db(get_backend("cmsis-q15")(frames, CFG), dsp.frame_magnitudes(frames, CFG))
    crest = frame_crest_factor_db(frames, CFG)
    assert np.corrcoef(snr, crest)[0, 1] < -0.5
    assert np.all(snr[crest < 15.0] >= 40.0)
