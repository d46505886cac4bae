"""The ADC model: rounding, saturation at full scale (counted), seeded noise, invalid samples, JSON."""

import numpy as np
import pytest

from edgecnn.errors import ConfigError, InputError
from firmware_sim.adc import ADC


def test_counts_round_trip_within_half_an_lsb():
    adc = ADC(full_scale=16.0)
    x = np.random.default_rng(0).uniform(-15.9, 15.9, 5000)
    counts = adc.to_counts(x)
    assert counts.dtype == np.int16
    assert adc.lsb == 16.0 / 32768
    back = adc.to_units(counts)
    assert back.dtype == np.float32
    assert np.max(np.abs(back.astype(np.float64) - x)) <= adc.lsb / 2 + 1e-9
    assert adc.saturated == 0 and adc.samples == 5000


def test_saturates_at_full_scale_and_counts_every_clipped_sample():
    adc = ADC(full_scale=16.0)
    x = np.array([0.0, 15.99, adc.max_units, 16.0, 20.0, -16.0, -16.0 - adc.lsb, -100.0])
    counts = adc.to_counts(x)
    assert counts.tolist()[2:] == [32767, 32767, 32767, -32768, -32768, -32768]
    # The top code itself and -full_scale are representable; +16.0 and beyond, or below -16, clip.
    assert adc.saturated == 4
    adc.to_counts(np.full(10, 17.0))
    assert adc.saturated == 14 and adc.samples == 18
    adc.reset()
    assert (adc.saturated, adc.samples, adc.invalid) == (0, 0, 0)


def test_saturation_of_a_sine_above_full_scale():
    adc = ADC(full_scale=2.0)
    t = np.arange(12800) / 12800
    x = 3.0 * np.sin(2 * np.pi * 50 * t)
    counts = adc.to_counts(x)
    codes = np.rint(x / adc.lsb)
    expected = int(np.count_nonzero(codes > 32767) + np.count_nonzero(codes < -32768))
    assert adc.saturated == expected > 0
    assert counts.max() == 32767 and counts.min() == -32768


def test_fewer_bits_keep_their_own_lsb():
    adc = ADC(full_scale=8.0, bits=12)
    assert adc.lsb == 8.0 / 2048
    counts = adc.to_counts(np.array([8.0, -9.0, 1.0]))
    assert counts.tolist() == [2047, -2048, 256]
    assert adc.saturated == 2


def test_noise_is_seeded_and_restarts_on_reset():
    x = np.zeros(20000)
    a, b = ADC(noise_lsb=2.0, seed=1), ADC(noise_lsb=2.0, seed=1)
    first = a.to_counts(x)
    assert np.array_equal(first, b.to_counts(x))
    assert not np.array_equal(first, ADC(noise_lsb=2.0, seed=2).to_counts(x))
    assert abs(float(first.std()) - np.sqrt(2.0**2 + 1 / 12)) < 0.1
    assert not np.array_equal(first, a.to_counts(x))  # the sequence moves on ...
    a.reset()
    assert np.array_equal(first, a.to_counts(x))  # ... and reset() restarts it


def test_non_finite_samples_are_counted_not_propagated():
    adc = ADC()
    counts = adc.to_counts(np.array([np.nan, np.inf, -np.inf, 1.0]))
    assert counts.tolist() == [0, 32767, -32768, 2048]
    assert adc.invalid == 3 and adc.saturated == 0


def test_level_dbfs():
    adc = ADC(full_scale=16.0)
    assert adc.level_dbfs(np.array([0.0, -adc.max_units])) == pytest.approx(0.0)
    assert adc.level_dbfs(np.array([adc.max_units * 10 ** (-30 / 20)])) == pytest.approx(-30.0)
    assert adc.level_dbfs(np.zeros(4)) == -np.inf


def test_dict_round_trip_and_errors():
    adc = ADC(full_scale=4.0, bits=14, units="m/s^2", noise_lsb=0.5, seed=3)
    again = ADC.from_dict(adc.to_dict())
    assert again.to_dict() == adc.to_dict()
    x = np.linspace(-5, 5, 101)
    assert np.array_equal(adc.to_counts(x), again.to_counts(x))
    with pytest.raises(ConfigError, match=r"Unknown ADC keys \['gain'\]"):
        ADC.from_dict({**adc.to_dict(), "gain": 2})
    with pytest.raises(ConfigError, match="format 'other'"):
        ADC.from_dict({"format": "other"})
    with pytest.raises(ConfigError, match=r"full_scale=-1 must be a finite number > 0"):
        ADC(full_scale=-1)
    with pytest.raises(ConfigError, match=r"bits=24 must be an integer in \[2, 16\]"):
        ADC(bits=24)
    with pytest.raises(ConfigError, match=r"noise_lsb=-0.1"):
        ADC(noise_lsb=-0.1)
    with pytest.raises(InputError, match="expects integer counts"):
        adc.to_units(np.zeros(3))
