"""Poisson spike trains and rate estimates: shapes, statistics against their binomial laws, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.neuro import spikes

DT = 1e-3


def test_shapes_and_dtype(key):
    rates = jnp.array([[5.0, 20.0, 80.0], [0.0, 1.0, 2.0]])
    s = spikes.poisson_spikes(rates, DT, key=key, num_bins=100)
    assert s.shape == (100, 2, 3) and s.dtype == jnp.float32
    assert set(np.unique(np.asarray(s))) <= {0.0, 1.0}
    over_time = spikes.poisson_spikes(jnp.full((100, 4), 30.0), DT, key=key, dtype=jnp.bool_)
    assert over_time.shape == (100, 4) and over_time.dtype == jnp.bool_
    assert spikes.firing_rate(s, DT, 0.01).shape == (100, 2, 3)
    assert spikes.mean_rate(s, DT).shape == (2, 3)


def test_same_key_same_train_other_key_other_train(key):
    a = spikes.poisson_spikes(jnp.full(8, 50.0), DT, key=key, num_bins=1000)
    b = spikes.poisson_spikes(jnp.full(8, 50.0), DT, key=key, num_bins=1000)
    c = spikes.poisson_spikes(jnp.full(8, 50.0), DT, key=jax.random.key(1), num_bins=1000)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_extreme_rates_are_exact(key):
    s = spikes.poisson_spikes(jnp.array([0.0, 1 / DT]), DT, key=key, num_bins=500)
    np.testing.assert_array_equal(s[:, 0], 0.0)
    np.testing.assert_array_equal(s[:, 1], 1.0)


def test_mean_rate_recovered_within_statistical_bound(key):
    """Count over T bins ~ Binomial(T, r·dt): each neuron's mean rate within 5 standard deviations,
    and the spread over 200 neurons matches sqrt(r(1 - r·dt)/(T·dt)) to 15 %."""
    rate, bins = 40.0, 20_000
    estimate = np.asarray(spikes.mean_rate(
        spikes.poisson_spikes(jnp.full(200, rate), DT, key=key, num_bins=bins), DT))
    sigma = spikes.rate_estimate_std(rate, DT, bins * DT)
    assert np.all(np.abs(estimate - rate) < 5 * sigma), (estimate.min(), estimate.max(), sigma)
    assert abs(estimate.mean() - rate) < 5 * sigma / math.sqrt(200)
    assert 0.85 < estimate.std() / sigma < 1.15


def test_error_falls_like_one_over_sqrt_window(key):
    rate, windows = 50.0, np.array([0.01, 0.04, 0.16, 0.64])
    train = spikes.poisson_spikes(jnp.full(64, rate), DT, key=key, num_bins=20_000)
    measured = []
    for w in windows:
        edge = int(w / DT)  # compare away from the ends, where the window is complete
        estimate = np.asarray(spikes.firing_rate(train, DT, float(w)))[edge:-edge]
        measured.append(np.sqrt(np.mean((estimate - rate) ** 2)))
        assert measured[-1] == pytest.approx(spikes.rate_estimate_std(rate, DT, float(w)), rel=0.1)
    slope = np.polyfit(np.log(windows), np.log(measured), 1)[0]
    assert -0.55 < slope < -0.45


def test_time_varying_rate_is_tracked(key):
    """Averaged over 400 trials, the Gaussian estimate follows a 2 Hz sinusoidal rate, away from
    the ends (where a one-sided kernel leans towards the rate inside the recording)."""
    trials, sigma, freq = 400, 0.01, 2.0
    t = jnp.arange(1000, dtype=jnp.float32) * DT
    rate = 40.0 + 30.0 * jnp.sin(2 * jnp.pi * freq * t)
    estimate = spikes.firing_rate(
        spikes.poisson_spikes(jnp.broadcast_to(rate[:, None], (1000, trials)), DT, key=key),
        DT, sigma, kernel="gaussian").mean(axis=1)
    # A Gaussian of σ scales a sinusoid's amplitude by exp(-(2πfσ)²/2); the estimate's standard
    # deviation is sqrt(r / (2√π σ)) per trial (Σk² / (Σk)² = dt / (2√π σ)).
    smoothed = 40.0 + 30.0 * math.exp(-0.5 * (2 * math.pi * freq * sigma) ** 2) * np.sin(
        2 * np.pi * freq * np.asarray(t))
    std = math.sqrt(70.0 / (2 * math.sqrt(math.pi) * sigma) / trials)
    edge = int(4 * sigma / DT)
    error = np.abs(np.asarray(estimate) - smoothed)[edge:-edge]
    assert error.max() < 5 * std, (error.max(), std)
    assert np.sqrt(np.mean(error ** 2)) < 1.2 * std


@pytest.mark.parametrize("kernel", ["boxcar", "gaussian"])
def test_no_dip_at_the_edges(kernel):
    np.testing.assert_allclose(spikes.firing_rate(np.ones((30, 2)), DT, 0.02, kernel=kernel),
                               1 / DT, rtol=1e-6)


def test_boxcar_is_the_windowed_count():
    s = np.zeros(20, np.float32)
    s[[3, 4, 10]] = 1
    estimate = np.asarray(spikes.firing_rate(s, DT, 5 * DT))
    assert estimate[4] == pytest.approx(2 / (5 * DT))   # bins 2..6 hold spikes 3 and 4
    assert estimate[0] == pytest.approx(0.0)            # bins 0..2 (edge: 3 bins inside)
    assert estimate[2] == pytest.approx(2 / (5 * DT))   # bins 0..4
    assert estimate[19] == pytest.approx(0.0)


def test_under_jit_matches_eager(key):
    sample = jax.jit(lambda r, k: spikes.poisson_spikes(r, DT, key=k, num_bins=50))
    np.testing.assert_array_equal(sample(jnp.full(3, 100.0), key),
                                  spikes.poisson_spikes(jnp.full(3, 100.0), DT, key=key, num_bins=50))


@pytest.mark.parametrize("call, error, match", [
    (lambda k: spikes.poisson_spikes(jnp.ones(3), 0.0, key=k, num_bins=5), ValueError, "dt must be a positive"),
    (lambda k: spikes.poisson_spikes(jnp.ones(3), "1ms", key=k, num_bins=5), TypeError, "dt must be a number"),
    (lambda k: spikes.poisson_spikes(jnp.array([-1.0]), DT, key=k, num_bins=5), ValueError, "≥ 0 Hz"),
    (lambda k: spikes.poisson_spikes(jnp.array([jnp.nan]), DT, key=k, num_bins=5), ValueError, "finite"),
    (lambda k: spikes.poisson_spikes(jnp.array([2000.0]), DT, key=k, num_bins=5), ValueError,
     r"rates·dt must be ≤ 1 .* 2000.0 Hz"),
    (lambda k: spikes.poisson_spikes(jnp.ones(3), DT, key=k, num_bins=0), ValueError, "num_bins"),
    (lambda k: spikes.poisson_spikes(10.0, DT, key=k), ValueError, "scalar rate needs num_bins"),
    (lambda k: spikes.firing_rate(jnp.ones(10), DT, 1e-4), ValueError, "shorter than one bin"),
    (lambda k: spikes.firing_rate(jnp.ones(10), DT, 0.01, kernel="alpha"), ValueError,
     "kernel must be one of"),
    (lambda k: spikes.firing_rate(1.0, DT, 0.01), ValueError, "time axis first"),
    (lambda k: spikes.mean_rate(jnp.ones((0, 3)), DT), ValueError, "non-empty time axis"),
    (lambda k: spikes.rate_estimate_std(2000.0, DT, 0.1), ValueError, "rate·dt"),
])
def test_bad_arguments_raise_clear_errors(key, call, error, match):
    with pytest.raises(error, match=match):
        call(key)


def test_key_is_required():
    with pytest.raises(TypeError, match="key"):
        spikes.poisson_spikes(jnp.ones(3), DT, num_bins=5)
