"""The estimated latency on device profiles: the stated arithmetic, labelled as an estimate."""

from __future__ import annotations

import json

import pytest

from edgecnn.config import SpectrogramConfig
from edgecnn.errors import ConfigError
from firmware_sim.profiles import BUILTIN, DeviceProfile, estimate_latency, load_profile


def test_estimate_is_macs_times_cycles_at_the_clock_plus_the_dsp_per_frame():
    cfg = SpectrogramConfig()
    m4 = BUILTIN["cortex-m4"]
    got = estimate_latency(m4, cfg, macs=1_000_000, every_frames=14)
    assert got["estimate"] is True
    assert got["inference_ms"] == pytest.approx(1_000_000 * m4.cycles_per_mac / m4.clock_hz * 1e3, rel=1e-3)
    assert got["dsp_ms_per_frame"] == pytest.approx(m4.dsp_cycles_per_frame / m4.clock_hz * 1e3, rel=1e-3)
    period = 14 * cfg.hop / cfg.fs
    expected_load = (1_000_000 * m4.cycles_per_mac + 14 * m4.dsp_cycles_per_frame) / m4.clock_hz / period
    assert got["cpu_load"] == pytest.approx(expected_load, rel=1e-3)
    assert got["assumptions"]["cycles_per_mac"] == m4.cycles_per_mac
    # Faster parts give smaller estimates.
    assert (estimate_latency(BUILTIN["cortex-m7"], cfg, macs=10**6)["inference_ms"] < got["inference_ms"])


def test_a_user_profile_without_assumptions_gives_no_estimate(tmp_path):
    path = tmp_path / "part.json"
    path.write_text(json.dumps({"name": "mine", "flash_bytes": 1 << 20, "ram_bytes": 1 << 17, "clock_hz": 1e8}))
    got = estimate_latency(load_profile(path), SpectrogramConfig(), macs=10**6)
    assert got["estimate"] is None and "cycles_per_mac" in got["reason"]
    path.write_text(json.dumps({"name": "mine", "flash_bytes": 1 << 20, "ram_bytes": 1 << 17, "clock_hz": 1e8,
                                "cycles_per_mac": 1.5, "dsp_cycles_per_frame": 9000}))
    assert estimate_latency(load_profile(path), SpectrogramConfig(), macs=10**6)["inference_ms"] == 15.0


def test_bad_latency_assumptions_are_refused():
    with pytest.raises(ConfigError, match="cycles_per_mac=0"):
        DeviceProfile(name="x", flash_bytes=1, ram_bytes=1, clock_hz=1.0, cycles_per_mac=0)
