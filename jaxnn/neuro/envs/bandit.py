"""The K-armed Gaussian bandit (Sutton & Barto 2018, §2.3) in pure JAX.

A problem draws true values q*(a) ~ N(0, 1) for a = 0..K−1; pulling arm a pays r ~ N(q*(a), 1).
The (pseudo-)regret of a pull is max_a q*(a) − q*(a_t), so after T trials it is
Σ_t (max_a q*(a) − q*(a_t)). The agents that learn it are in `jaxnn.neuro.agents`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array


def problems(key: jax.Array, n_problems: int, n_arms: int = 10) -> Array:
    """True arm values q* (n_problems, n_arms) ~ N(0, 1)."""
    if n_arms < 2 or n_problems < 1:
        raise ValueError(f"bandit.problems: need n_arms >= 2 and n_problems >= 1, got "
                         f"{n_arms} and {n_problems}")
    return jax.random.normal(key, (n_problems, n_arms), jnp.float32)


def pull(key: jax.Array, q_star: Array, arm: Array) -> tuple[Array, Array]:
    """One pull of `arm` on problem q* (K,): (reward r ~ N(q*(arm), 1), regret max q* − q*(arm))."""
    reward = q_star[arm] + jax.random.normal(key, (), q_star.dtype)
    return reward, q_star.max() - q_star[arm]


__all__ = ["problems", "pull"]
