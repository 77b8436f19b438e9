"""Poisson spike trains from firing rates, and firing rates estimated back from spikes.

Time is cut into bins of `dt` seconds and a neuron firing at rate r (Hz) spikes in a bin,
independently of every other bin, with probability r·dt (Dayan & Abbott, *Theoretical
Neuroscience*, 2001, §1.4). The train is binary, one entry per bin, and approximates a Poisson
process as long as r·dt ≪ 1; r·dt > 1 has no meaning and is refused. A rate that changes over
time (an inhomogeneous process) uses its own r[t] in bin t.

Going back, the rate is a windowed count: with a kernel k over bins,

    r̂[t] = Σ_j k[t - j] · s[j]  /  (dt · Σ_j k[t - j]),      j over the recorded bins,

so a boxcar of L bins gives (spikes in the L bins around t) / (L·dt), and near the ends of the
recording the kernel is renormalised to the part that lies inside it (no dip at the edges).
For a constant rate r and a boxcar of W = L·dt seconds the count is binomial, so

    std(r̂) = sqrt(r · (1 - r·dt) / W)                           (`rate_estimate_std`)

which falls like 1/sqrt(W): four times the window, half the error.

Shapes: time is always axis 0. `rates` is (*S) for a constant rate per neuron (then give
`num_bins`) or (T, *S) over time; spike trains are (T, *S); estimates are (T, *S).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ["KERNELS", "firing_rate", "mean_rate", "poisson_spikes", "rate_estimate_std"]

KERNELS = ("boxcar", "gaussian")
_GAUSS_HALF_WIDTH = 4.0  # the Gaussian kernel is cut at ±4σ (it keeps 99.99 % of its mass)


def _positive_seconds(where: str, what: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{where}: {what} must be a number of seconds, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where}: {what} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


def _float_array(where: str, what: str, x: Any) -> jax.Array:
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"{where}: {what} must be real, got dtype {x.dtype}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    return x


def _concrete(x: jax.Array) -> bool:
    return not isinstance(x, jax.core.Tracer)


def poisson_spikes(rates: Any, dt: float, *, key: jax.Array, num_bins: int | None = None,
                   dtype: Any = jnp.float32) -> jax.Array:
    """A binary spike train per neuron: s[t] = 1 with probability rates[t]·dt, independently.

    Args:
      rates: firing rates in Hz (spikes per second), ≥ 0 and ≤ 1/dt. Shape (*S), one constant
        rate per neuron, when `num_bins` is given; otherwise (T, *S), the rate in each bin.
      dt: bin width in seconds.
      key: a `jax.random` key (required: the train is a pure function of key and rates).
      num_bins: number of time bins T for constant rates; None when `rates` already has time
        on axis 0.
      dtype: dtype of the train (float32 by default, so it feeds a layer directly; bool works).

    Returns:
      (T, *S) array of 0s and 1s.

    The values of `rates` are checked outside `jit`; under `jit` they cannot be, and
    rates·dt is clipped to [0, 1].
    """
    where = "poisson_spikes"
    dt = _positive_seconds(where, "dt", dt)
    rates = _float_array(where, "rates", rates)
    if num_bins is None:
        if rates.ndim == 0:
            raise ValueError(f"{where}: a scalar rate needs num_bins (the number of time bins); "
                             f"or pass rates of shape (T, ...) with time on axis 0")
        shape = rates.shape
    else:
        if isinstance(num_bins, bool) or not isinstance(num_bins, int) or num_bins < 1:
            raise ValueError(f"{where}: num_bins must be a positive int, got {num_bins!r}")
        shape = (num_bins, *rates.shape)
    if _concrete(rates) and rates.size:
        lo, hi = float(jnp.min(rates)), float(jnp.max(rates))
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0:
            raise ValueError(f"{where}: rates must be finite and ≥ 0 Hz, got values in [{lo}, {hi}]")
        if hi * dt > 1.0:
            raise ValueError(f"{where}: rates·dt must be ≤ 1 (one spike per bin at most), got max rate "
                             f"{hi} Hz with dt {dt} s (rate·dt = {hi * dt:.3g}); use a smaller dt")
    p = jnp.broadcast_to(jnp.clip(rates * dt, 0.0, 1.0), shape)
    u = jax.random.uniform(key, shape, dtype=rates.dtype)
    return (u < p).astype(dtype)


def _kernel(where: str, kernel: str, window: float, dt: float) -> jax.Array:
    if kernel == "boxcar":
        length = round(window / dt)
        if length < 1:
            raise ValueError(f"{where}: window {window} s is shorter than one bin (dt {dt} s)")
        return jnp.ones(length, jnp.float32)
    if kernel == "gaussian":
        half = math.ceil(_GAUSS_HALF_WIDTH * window / dt)
        t = jnp.arange(-half, half + 1, dtype=jnp.float32) * dt
        return jnp.exp(-0.5 * (t / window) ** 2)
    raise ValueError(f"{where}: kernel must be one of {KERNELS}, got {kernel!r}")


def firing_rate(spikes: Any, dt: float, window: float, *, kernel: str = "boxcar") -> jax.Array:
    """The rate in Hz at every bin, estimated from spikes by a centred kernel (formula above).

    Args:
      spikes: (T, *S) spike counts per bin (a binary train from `poisson_spikes`, or counts
        summed over trials), time on axis 0.
      dt: bin width in seconds.
      window: kernel width in seconds: the boxcar's length (rounded to whole bins), or the
        Gaussian's standard deviation σ (cut at ±4σ).
      kernel: "boxcar" (the windowed count) or "gaussian".

    Returns:
      (T, *S) estimate r̂[t] in Hz, in the float dtype of `spikes` (float32 for bool/int).
    """
    where = "firing_rate"
    dt = _positive_seconds(where, "dt", dt)
    window = _positive_seconds(where, "window", window)
    spikes = _float_array(where, "spikes", spikes)
    if spikes.ndim == 0:
        raise ValueError(f"{where}: spikes must have a time axis first, shape (T, ...), got a scalar")
    k = _kernel(where, kernel, window, dt).astype(spikes.dtype)
    weighted = _convolve_time(spikes.reshape(spikes.shape[0], -1).T, k)
    mass = _convolve_time(jnp.ones((1, spikes.shape[0]), spikes.dtype), k)  # kernel mass inside
    return (weighted / (dt * mass)).T.reshape(spikes.shape)


def _convolve_time(x: jax.Array, k: jax.Array) -> jax.Array:
    """(M, T) rows convolved with k (L,), centred as scipy's mode="same", zeros outside:
    y[m, t] = Σ_j x[m, j] · k[t + (L-1)//2 - j]. Any L, also longer than T."""
    length = k.shape[0]
    lo = length - 1 - (length - 1) // 2
    y = lax.conv_general_dilated(x[:, None, :], k[::-1][None, None, :], (1,),
                                 [(lo, length - 1 - lo)], precision=lax.Precision.HIGHEST)
    return y[:, 0, :]


def mean_rate(spikes: Any, dt: float) -> jax.Array:
    """Spikes per second over the whole train: Σ_t s[t] / (T·dt). (T, *S) -> (*S)."""
    dt = _positive_seconds("mean_rate", "dt", dt)
    spikes = _float_array("mean_rate", "spikes", spikes)
    if spikes.ndim == 0 or spikes.shape[0] == 0:
        raise ValueError(f"mean_rate: spikes must have a non-empty time axis first, got shape {spikes.shape}")
    return spikes.sum(axis=0) / (spikes.shape[0] * dt)


def rate_estimate_std(rate: float, dt: float, window: float) -> float:
    """Standard deviation of the boxcar estimate for a constant rate: sqrt(r·(1 - r·dt) / W),
    W the window rounded to whole bins (binomial count of W/dt bins, each p = r·dt)."""
    dt = _positive_seconds("rate_estimate_std", "dt", dt)
    bins = max(round(_positive_seconds("rate_estimate_std", "window", window) / dt), 1)
    if not 0 <= rate * dt <= 1:
        raise ValueError(f"rate_estimate_std: need 0 ≤ rate·dt ≤ 1, got rate {rate} Hz, dt {dt} s")
    return math.sqrt(rate * (1 - rate * dt) / (bins * dt))
