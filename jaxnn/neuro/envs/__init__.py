"""Environments in pure JAX (seeded, jit- and vmap-able): a multi-armed bandit and CartPole.
They know nothing of the learners; the agents and policies that act in them are in
`jaxnn.neuro.agents` and `jaxnn.neuro.reinforce`."""

from jaxnn.neuro.envs import bandit, cartpole

__all__ = ["bandit", "cartpole"]
