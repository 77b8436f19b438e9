"""CartPole-v1 in pure JAX, following gymnasium's `CartPoleEnv` (Barto, Sutton & Anderson 1983;
equations of motion from Florian 2005, "Correct equations for the dynamics of the cart-pole").

State s = (x, ẋ, θ, θ̇), a cart of mass m_c on a track and a pole of mass m_p, half-length l.
Action a ∈ {0, 1} pushes with F = −F_mag or +F_mag. With M = m_c + m_p:

    temp = (F + m_p l θ̇² sin θ) / M
    θ̈   = (g sin θ − cos θ · temp) / (l (4/3 − m_p cos² θ / M))
    ẍ   = temp − m_p l θ̈ cos θ / M

and one explicit Euler step of τ: x += τ ẋ, ẋ += τ ẍ, θ += τ θ̇, θ̇ += τ θ̈ (positions use the
old velocities). The episode terminates when |x| > 2.4 or |θ| > 12°, and is truncated after
500 steps; the reward is 1 for every step taken, the terminating one included, so the return
is the episode's length. Resets draw every state component from U(−0.05, 0.05).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
OBS_SIZE = 4
N_ACTIONS = 2


class CartPoleParams(NamedTuple):
    """gymnasium's CartPole-v1 constants."""

    gravity: float = 9.8
    masscart: float = 1.0
    masspole: float = 0.1
    length: float = 0.5  # half the pole's length
    force_mag: float = 10.0
    tau: float = 0.02  # seconds per step
    theta_threshold: float = 12 * 2 * math.pi / 360
    x_threshold: float = 2.4
    max_steps: int = 500


class Episodes(NamedTuple):
    """A batch of N episodes padded to T = max_steps; mask is 1 while an episode runs."""

    obs: Array  # (N, T, 4) float32
    actions: Array  # (N, T) int32
    rewards: Array  # (N, T) float32, 0 after the end
    mask: Array  # (N, T) float32


def reset(key: jax.Array, shape: tuple[int, ...] = ()) -> Array:
    """Initial states (*shape, 4), each component uniform in (−0.05, 0.05)."""
    return jax.random.uniform(key, (*shape, OBS_SIZE), jnp.float32, -0.05, 0.05)


def step(state: Array, action: Array, env: CartPoleParams = CartPoleParams()
         ) -> tuple[Array, Array]:
    """One Euler step (see the module docstring). state (..., 4), action (...) in {0, 1}
    -> (next state (..., 4), terminated (...) bool)."""
    if state.shape[-1:] != (OBS_SIZE,) or action.shape != state.shape[:-1]:
        raise ValueError(f"cartpole.step: expected state (..., 4) and action (...), got "
                         f"{tuple(state.shape)} and {tuple(action.shape)}")
    x, x_dot, theta, theta_dot = (state[..., i] for i in range(OBS_SIZE))
    force = jnp.where(action == 1, env.force_mag, -env.force_mag).astype(state.dtype)
    total_mass = env.masspole + env.masscart
    polemass_length = env.masspole * env.length
    cos, sin = jnp.cos(theta), jnp.sin(theta)
    temp = (force + polemass_length * theta_dot ** 2 * sin) / total_mass
    theta_acc = (env.gravity * sin - cos * temp) / (
        env.length * (4.0 / 3.0 - env.masspole * cos ** 2 / total_mass))
    x_acc = temp - polemass_length * theta_acc * cos / total_mass
    nxt = jnp.stack([x + env.tau * x_dot, x_dot + env.tau * x_acc,
                     theta + env.tau * theta_dot, theta_dot + env.tau * theta_acc], axis=-1)
    terminated = ((jnp.abs(nxt[..., 0]) > env.x_threshold)
                  | (jnp.abs(nxt[..., 2]) > env.theta_threshold))
    return nxt, terminated


def rollout(policy: Callable, params, key: jax.Array, n_episodes: int,
            env: CartPoleParams = CartPoleParams(), *, greedy: bool = False) -> Episodes:
    """Run N episodes in parallel with a ~ softmax(policy(params, s)) (argmax if greedy).

    policy: (params, obs (N, 4)) -> logits (N, 2), e.g. a jaxnn model without state.
    One `lax.scan` of max_steps steps;
    a finished episode's state stays frozen and its steps are masked out.
    """
    k_reset, k_steps = jax.random.split(key)
    state0 = reset(k_reset, (n_episodes,))

    def body(carry, k):
        state, running = carry
        logits = policy(params, state)
        if greedy:
            action = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        else:
            action = jax.random.categorical(k, logits, axis=-1).astype(jnp.int32)
        nxt, terminated = step(state, action, env)
        mask = running.astype(jnp.float32)
        out = (state, action, mask)
        state = jnp.where(running[:, None], nxt, state)
        return (state, running & ~terminated), out

    keys = jax.random.split(k_steps, env.max_steps)
    running0 = jnp.ones((n_episodes,), bool)
    _, (obs, actions, mask) = lax.scan(body, (state0, running0), keys)
    obs, actions, mask = (jnp.swapaxes(a, 0, 1) for a in (obs, actions, mask))
    return Episodes(obs, actions, mask, mask)


def returns_of(episodes: Episodes) -> Array:
    """Each episode's undiscounted return (its length, at most max_steps): (N,)."""
    return episodes.rewards.sum(axis=-1)


__all__ = [
    "CartPoleParams", "Episodes", "N_ACTIONS", "OBS_SIZE", "reset", "returns_of", "rollout",
    "step",
]
