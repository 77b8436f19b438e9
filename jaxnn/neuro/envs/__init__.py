"""Environments in pure JAX (seeded, jit- and vmap-able): a multi-armed bandit and CartPole."""

from jaxnn.neuro.envs import bandit, cartpole

__all__ = ["bandit", "cartpole"]
