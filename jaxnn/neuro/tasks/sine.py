"""Sine-wave generation from a frequency cue (after Sussillo & Abbott 2009's static-input
pattern generator): a constant input u = f / f_max for the whole trial, and the target output
d_t = sin(2π f t·dt) from t = 0, with f drawn uniformly from [f_min, f_max] (Hz; dt in ms).

Performance: the normalised error Σ (y − d)² / Σ d² over the batch; goal ≤ 0.05.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnn.neuro.tasks.base import Task, Trials, batched, masked_mse


def sine_generation(dt: float = 20.0, *, duration: float = 2000.0, f_min: float = 1.0,
                    f_max: float = 3.0) -> Task:
    """Inputs (1): the cue f / f_max. Output (1): the sine. condition: (frequency in Hz,)."""
    n_steps = max(1, int(round(duration / dt)))
    t_sec = (jnp.arange(n_steps, dtype=jnp.float32) + 1) * (dt / 1000.0)

    def trial(key):
        f = jax.random.uniform(key, (), jnp.float32, f_min, f_max)
        x = jnp.full((n_steps, 1), f / f_max, jnp.float32)
        d = jnp.sin(2 * jnp.pi * f * t_sec)[:, None]
        return Trials(x, d, jnp.ones(n_steps, jnp.float32), jnp.zeros((), jnp.int32),
                      f[None])

    def normalised_error(y, trials):
        d = trials.target.astype(y.dtype)
        return ((y - d) ** 2).sum() / (d ** 2).sum()

    return Task("sine_generation", 1, 1, n_steps, dt, batched(trial), masked_mse(),
                normalised_error, 0.05, False, 0, ("frequency",))


__all__ = ["sine_generation"]
