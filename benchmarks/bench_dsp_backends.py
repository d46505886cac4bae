"""DSP backends: per-frame time, fidelity against the float definition, q15 SNR curve, memory.

Run from the repo root: ``python benchmarks/bench_dsp_backends.py`` (about 20 s on one core).
Times are host times of the Python-wrapped kernels (median per frame), not Cortex-M cycles:
they compare the backends' cost in this simulator, nothing more.
"""

from __future__ import annotations

import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import resample_poly

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgecnn import synth  # noqa: E402
from edgecnn.config import SpectrogramConfig  # noqa: E402
from firmware_sim.adc import ADC  # noqa: E402
from firmware_sim.dsp_backends import BACKENDS, get_backend, working_memory_bytes  # noqa: E402
from firmware_sim.dsp_fidelity import (  # noqa: E402
    fidelity,
    frame_crest_factor_db,
    frame_snr_db,
    q15_error_budget,
    scale_to_dbfs,
    snr_curve,
)

LEVELS_DB = range(-40, 1, 5)
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def signals(cfg: SpectrogramConfig) -> np.ndarray:
    """16 synthetic vibration windows (both classes) and 4 two-tone windows."""
    windows = synth.generate(n=16, seed=0)["signal"].astype(np.float64)
    t = np.arange(cfg.window_samples) / cfg.fs
    tones = np.stack([np.sin(2 * np.pi * f * t + 0.4) + 0.3 * np.sin(2 * np.pi * 3.7 * f * t)
                      for f in (29.7, 50.0, 1234.5, 6000.3)])
    return np.concatenate([windows, tones])


def per_frame_us(backend, frames: np.ndarray, cfg: SpectrogramConfig, repeats: int) -> float:
    backend(frames, cfg)  # warm-up: tables and instances
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        backend(frames, cfg)
        times.append(time.perf_counter() - start)
    return float(np.median(times)) / frames.shape[0] * 1e6


def main() -> None:
    cfg = SpectrogramConfig()
    data = signals(cfg)
    adc = ADC()
    print(f"config: nperseg={cfg.nperseg} hop={cfg.hop} window={cfg.window} fs={cfg.fs:g}; "
          f"ADC {adc.to_dict()}")
    n_frames = len(data) * cfg.n_frames
    print(f"signals: {len(data)} windows (16 synth, 4 two-tone), {n_frames} frames per level\n")

    print("per-frame time (median, microseconds per frame; ratio to numpy)")
    frames = np.lib.stride_tricks.sliding_window_view(scale_to_dbfs(data[:1], -6.0, adc)[0], cfg.nperseg)
    frames = np.ascontiguousarray(frames[:: cfg.hop])
    print(f"{'backend':<11} {'k=1':>9} {'ratio':>7} {'k=44':>9} {'ratio':>7}")
    base = {}
    for name in BACKENDS:
        backend = get_backend(name)
        one = per_frame_us(backend, frames[:1], cfg, repeats=400)
        many = per_frame_us(backend, frames[: cfg.n_frames], cfg, repeats=40)
        base.setdefault("one", one)
        base.setdefault("many", many)
        print(f"{name:<11} {one:9.1f} {one / base['one']:7.2f} {many:9.1f} {many / base['many']:7.2f}")

    print("\nfidelity against the float64 definition (windows at -6 dBFS; per-frame SNR in dB; "
          "max rel. error = max-bin error / frame max magnitude)")
    at_6db = scale_to_dbfs(data, -6.0, adc)
    print(f"{'backend':<11} {'frames':>6} {'min':>7} {'p05':>7} {'median':>7} {'pooled':>7} "
          f"{'max rel err':>12}")
    for name in ("cmsis-f32", "cmsis-q15"):
        row = fidelity(get_backend(name), at_6db, cfg)
        print(f"{name:<11} {row.frames:6d} {row.snr_db_min:7.1f} {row.snr_db_p05:7.1f} "
              f"{row.snr_db_median:7.1f} {row.snr_db_pooled:7.1f} {row.max_rel_error:12.2e}")
    raw = fidelity(get_backend("cmsis-f32"), data, cfg)
    print(f"cmsis-f32 on the unscaled windows (peaks up to 18 g, DC offsets): "
          f"max rel. error {raw.max_rel_error:.2e}")

    for bfp in (True, False):
        print(f"\ncmsis-q15 SNR curve, block floating point {'on' if bfp else 'off'} "
              "(peak level in dBFS; reference = float definition of the unquantised signal)")
        print(f"{'dBFS':>5} {'min':>7} {'p05':>7} {'median':>7} {'pooled':>7} {'max rel err':>12}")
        for level, row in zip(LEVELS_DB, snr_curve(data, cfg, levels_db=LEVELS_DB, adc=adc,
                                                     block_floating_point=bfp)):
            print(f"{level:5d} {row.snr_db_min:7.1f} {row.snr_db_p05:7.1f} {row.snr_db_median:7.1f} "
                  f"{row.snr_db_pooled:7.1f} {row.max_rel_error:12.2e}")

    for level in (-30.0, 0.0):
        print(f"\ncmsis-q15 error budget at {level:g} dBFS "
              "(each row: integer stages up to it, the rest exact)")
        print(f"{'stage':<14} {'min':>7} {'median':>7} {'pooled':>7}")
        for row in q15_error_budget(scale_to_dbfs(data, level, adc), cfg, adc):
            print(f"{row.backend:<14} {row.snr_db_min:7.1f} {row.snr_db_median:7.1f} "
                  f"{row.snr_db_pooled:7.1f}")

    print("\nworking memory in bytes (RAM: per-frame buffers; flash: window and FFT tables)")
    keys = ("frame_buffer", "fft_output", "magnitude", "fft_instance", "ram_total",
            "window_table", "fft_tables", "fft_tables_trimmed", "flash_total")
    print(f"{'backend':<11} " + " ".join(f"{k:>18}" for k in keys))
    for name in BACKENDS:
        mem = working_memory_bytes(name, cfg)
        print(f"{name:<11} " + " ".join(f"{mem.get(k, '-'):>18}" for k in keys))

    print("\nq15 SNR by frame length (hann, 1/8 overlap; worst frame at -30 / 0 dBFS)")
    for nperseg in (128, 256, 512, 1024):
        other = SpectrogramConfig(nperseg=nperseg, noverlap=nperseg // 8, window="hann")
        rows = snr_curve(data[:8], other, levels_db=(-30.0, 0.0), adc=adc)
        print(f"nperseg={nperseg:<5} min {rows[0].snr_db_min:5.1f} / {rows[1].snr_db_min:5.1f} dB, "
              f"pooled {rows[0].snr_db_pooled:5.1f} / {rows[1].snr_db_pooled:5.1f} dB")

    real_data(cfg)


def recording_windows(path: Path, cfg: SpectrogramConfig, limit: int = 8) -> np.ndarray:
    """Up to ``limit`` consecutive windows of one npz recording, resampled to cfg.fs."""
    with np.load(path, allow_pickle=False) as data:
        signal, fs = data["signal"].astype(np.float64), float(data["fs"])
    ratio = Fraction(int(round(cfg.fs)), int(round(fs))).limit_denominator(100000)
    x = resample_poly(signal, ratio.numerator, ratio.denominator)
    k = min(limit, len(x) // cfg.window_samples)
    return x[: k * cfg.window_samples].reshape(k, cfg.window_samples)


def real_data(cfg: SpectrogramConfig) -> None:
    files = sorted(DATA.glob("cwru/*.npz")) + sorted(DATA.glob("mfpt/*.npz"))
    if not files:
        print(f"\nreal data: none found under {DATA}; section skipped")
        return
    print("\nreal recordings at their own level through a +/-16 g 16-bit ADC (resampled to 12800 Hz, "
          "up to 8 windows each)")
    print(f"{'recording':<28} {'frames':>6} {'dBFS':>6} {'clipped':>7} {'q15 min':>8} {'median':>7} "
          f"{'pooled':>7} {'crest@min':>9} {'f32 max rel':>11}")
    pooled_all = []
    for path in files:
        windows = recording_windows(path, cfg)
        adc = ADC()
        q15 = get_backend("cmsis-q15", adc=adc)
        row = fidelity(q15, windows, cfg)
        f32 = fidelity(get_backend("cmsis-f32"), windows, cfg)
        frames = sliding_window_view(windows, cfg.nperseg, axis=-1)[:, :: cfg.hop].reshape(-1, cfg.nperseg)
        snr = frame_snr_db(q15(frames, cfg), get_backend("numpy")(frames, cfg))
        crest = frame_crest_factor_db(frames, cfg)[int(np.argmin(snr))]
        pooled_all.append((row.snr_db_pooled, np.corrcoef(snr, frame_crest_factor_db(frames, cfg))[0, 1]))
        print(f"{path.parent.name + '/' + path.stem:<28} {row.frames:6d} {adc.level_dbfs(windows):6.1f} "
              f"{adc.saturated:7d} {row.snr_db_min:8.1f} {row.snr_db_median:7.1f} {row.snr_db_pooled:7.1f} "
              f"{crest:7.1f}dB {f32.max_rel_error:11.1e}")
    corr = np.median([c for _, c in pooled_all])
    print(f"median correlation of per-frame q15 SNR with the frame's crest factor: {corr:.2f}")


if __name__ == "__main__":
    main()
