"""Agents that learn the K-armed bandit (`jaxnn.neuro.envs.bandit`), in pure JAX.

An agent is three pure functions (`Agent`), so `run` is one `lax.scan` over trials,
`vmap`-ed over problems:

- ε-greedy (`epsilon_greedy`): sample-average estimates Q(a) = mean of a's rewards; with
  probability ε a uniformly random arm, else argmax Q (ties broken at random).
  ε = 0 is the greedy agent, ε = 1 the random one.
- REINFORCE (`reinforce_agent`): a jaxnn policy maps a constant input x = 1 to logits z, π =
  softmax(z); after each pull θ ← θ − α dL/dθ with L the surrogate of `jaxnn.neuro.reinforce`
  (∇̂J = (r − b) ∇ log π(a)) and the baseline b the mean of the rewards before this one
  (Sutton & Barto's gradient bandit is this with a bias-only policy).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxnn.backprop import value_and_grad
from jaxnn.core import Layer
from jaxnn.initializers import zeros
from jaxnn.layers import Dense
from jaxnn.neuro.envs import bandit
from jaxnn.neuro.reinforce import reinforce_loss, sample_actions

Array = jax.Array


class Agent(NamedTuple):
    """init(key, K) -> state; act(state, key) -> arm (int32 scalar);
    update(state, arm, reward) -> state."""

    name: str
    init: Callable[[jax.Array, int], Any]
    act: Callable[[Any, jax.Array], Array]
    update: Callable[[Any, Array, Array], Any]


class Trials(NamedTuple):
    """One run's record, each (T,)."""

    arms: Array
    rewards: Array
    regret: Array  # max q* − q*(arm): the expected loss of each pull


def _argmax_random_ties(key, values):
    """argmax, a tie broken uniformly at random (a random score among the maxima)."""
    score = jax.random.uniform(key, values.shape, values.dtype)
    return jnp.argmax(jnp.where(values == values.max(), score, -1.0)).astype(jnp.int32)


def epsilon_greedy(epsilon: float) -> Agent:
    """Sample-average ε-greedy agent; state (Q (K,), counts (K,))."""
    if not 0.0 <= epsilon <= 1.0:
        raise ValueError(f"epsilon_greedy: epsilon must be in [0, 1], got {epsilon}")
    name = {0.0: "greedy", 1.0: "random"}.get(float(epsilon), f"eps_greedy_{epsilon:g}")

    def init(key, n_arms):
        return jnp.zeros(n_arms, jnp.float32), jnp.zeros(n_arms, jnp.float32)

    def act(state, key):
        q, _ = state
        k_explore, k_arm, k_tie = jax.random.split(key, 3)
        explore = jax.random.uniform(k_explore) < epsilon
        random_arm = jax.random.randint(k_arm, (), 0, q.shape[0], jnp.int32)
        return jnp.where(explore, random_arm, _argmax_random_ties(k_tie, q))

    def update(state, arm, reward):
        q, n = state
        pulled = jax.nn.one_hot(arm, q.shape[0], dtype=q.dtype)
        n = n + pulled
        return q + pulled * (reward - q) / jnp.maximum(n, 1.0), n

    return Agent(name, init, act, update)


def reinforce_agent(lr: float = 0.1, n_arms: int = 10, policy: Layer | None = None,
                    method: str = "autodiff") -> Agent:
    """REINFORCE with a running-mean baseline; state (params, baseline, pulls).

    policy: a jaxnn layer without state (1, 1) -> (1, n_arms) logits; default Dense(n_arms)
    with zero weights (π uniform at the start; its w and b both move, so the effective step
    is 2·lr). method: "autodiff" or "manual" (the layers' hand-written backward).
    """
    if lr <= 0:
        raise ValueError(f"reinforce_agent: lr must be positive, got {lr}")
    if n_arms < 2:
        raise ValueError(f"reinforce_agent: n_arms must be >= 2, got {n_arms}")
    model = policy if policy is not None else Dense(n_arms, w_init=zeros)
    grad_fn = value_and_grad(model, reinforce_loss(), method, jit=False)
    ones = jnp.ones((1, 1), jnp.float32)

    def init(key, k):
        if k != n_arms:
            raise ValueError(f"reinforce_agent: built for {n_arms} arms, the problem has {k}")
        out_shape, params, _ = model.init(key, (1, 1))
        if tuple(out_shape) != (1, n_arms):
            raise ValueError(f"reinforce_agent: the policy must map (1, 1) to (1, {n_arms}) "
                             f"logits, got {tuple(out_shape)}")
        return params, jnp.zeros((), jnp.float32), jnp.zeros((), jnp.float32)

    def act(state, key):
        return sample_actions(key, model(state[0], ones))[0][0]

    def update(state, arm, reward):
        params, baseline, pulls = state
        _, grads = grad_fn(params, (), ones, (arm[None], (reward - baseline)[None]))
        params = jax.tree.map(lambda p, g: p - lr * g, params, grads)
        pulls = pulls + 1.0
        return params, baseline + (reward - baseline) / pulls, pulls

    return Agent(f"reinforce_lr{lr:g}", init, act, update)


def run(agent: Agent, key: jax.Array, q_star: Array, n_trials: int, state: Any = None
        ) -> tuple[Any, Trials]:
    """Play one problem q* (K,) for n_trials pulls, from `state` (a fresh agent if None).
    Returns (final state, Trials). `vmap` over (key, q_star[, state]) for many problems."""
    if q_star.ndim != 1:
        raise ValueError(f"agents.run: expected q_star of shape (K,), got {tuple(q_star.shape)}; "
                         "vmap over problems")
    k_init, k_run = jax.random.split(key)
    if state is None:
        state = agent.init(k_init, q_star.shape[0])

    def trial(state, k):
        k_act, k_reward = jax.random.split(k)
        arm = agent.act(state, k_act)
        reward, regret = bandit.pull(k_reward, q_star, arm)
        return agent.update(state, arm, reward), Trials(arm, reward, regret)

    return lax.scan(trial, state, jax.random.split(k_run, n_trials))


__all__ = ["Agent", "Trials", "epsilon_greedy", "reinforce_agent", "run"]
