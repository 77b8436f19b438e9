"""Weight initialisers, each `init(key, shape, dtype=float32) -> array`, reproducible from a key.

Fan-in and fan-out follow the layouts jaxnn uses: Dense weights `(in, out)`, conv kernels
HWIO `(kh, kw, in, out)`, so `fan_in = kh·kw·in` and `fan_out = kh·kw·out`.

| name            | distribution | variance            | suits        |
|-----------------|--------------|---------------------|--------------|
| lecun_normal    | trunc. normal| 1 / fan_in          | tanh, SELU   |
| lecun_uniform   | uniform      | 1 / fan_in          |              |
| glorot_normal   | trunc. normal| 2 / (fan_in+fan_out)| tanh, sigmoid|
| glorot_uniform  | uniform      | 2 / (fan_in+fan_out)|              |
| he_normal       | trunc. normal| 2 / fan_in          | ReLU         |
| he_uniform      | uniform      | 2 / fan_in          |              |

References: LeCun et al. 1998 (Efficient BackProp); Glorot & Bengio 2010; He et al. 2015.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]

lecun_normal: Initializer = jax.nn.initializers.lecun_normal()
lecun_uniform: Initializer = jax.nn.initializers.lecun_uniform()
glorot_normal: Initializer = jax.nn.initializers.glorot_normal()
glorot_uniform: Initializer = jax.nn.initializers.glorot_uniform()
xavier_normal = glorot_normal
xavier_uniform = glorot_uniform
he_normal: Initializer = jax.nn.initializers.he_normal()
he_uniform: Initializer = jax.nn.initializers.he_uniform()


def zeros(key, shape, dtype=jnp.float32) -> jax.Array:
    """All zeros (the key is unused; kept for a uniform signature)."""
    return jnp.zeros(shape, dtype)


def ones(key, shape, dtype=jnp.float32) -> jax.Array:
    """All ones."""
    return jnp.ones(shape, dtype)


def normal(stddev: float = 1e-2) -> Initializer:
    """N(0, stddev²) entries."""
    return jax.nn.initializers.normal(stddev)


def uniform(scale: float = 1e-2) -> Initializer:
    """U[0, scale) entries."""
    return jax.nn.initializers.uniform(scale)


__all__ = [
    "Initializer", "lecun_normal", "lecun_uniform", "glorot_normal", "glorot_uniform",
    "xavier_normal", "xavier_uniform", "he_normal", "he_uniform", "zeros", "ones",
    "normal", "uniform",
]
