"""What every task shares: the trial batch, the task record, the two masked losses, and the
standard performance measure of a trial with a decision period.

A task's `sample(key, batch)` is pure JAX: one trial is drawn by `trial(key)` and a batch
is `jax.vmap` of it over split keys, so the same key gives the same trials, on any device,
and a generator nests inside `jit`, `vmap` or `lax.scan`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnn.losses import Loss


class Trials(NamedTuple):
    """A batch of N trials of T steps.

    x:         (N, T, n_in) inputs.
    target:    (N, T) int32 class per step (0 = fixate, 1.. = choices), or (N, T, n_out) float.
    weight:    (N, T) float loss weight per step (0 where the output is free).
    label:     (N,) int32 correct choice (1..), or 0 for a task without a choice.
    condition: (N, k) float, the task's trial variables (coherences, context, frequency).
    """

    x: jax.Array
    target: jax.Array
    weight: jax.Array
    label: jax.Array
    condition: jax.Array


class Task(NamedTuple):
    """A task: how to draw trials, how to score them, and when training may stop.

    sample(key, batch) -> Trials; loss: a `Loss` whose target is (target, weight);
    performance(y, trials) -> scalar in [0, 1] (fraction correct), or the normalised error
    for a regression task; goal / higher_is_better give the stopping criterion `reached`.
    """

    name: str
    n_in: int
    n_out: int
    n_steps: int
    dt: float
    sample: Callable[[jax.Array, int], Trials]
    loss: Loss
    performance: Callable[[jax.Array, Trials], jax.Array]
    goal: float
    higher_is_better: bool = True
    decision_from: int = 0
    conditions: tuple[str, ...] = ()

    def reached(self, value: float) -> bool:
        """The stopping criterion: performance at or past the goal."""
        return value >= self.goal if self.higher_is_better else value <= self.goal


def batched(trial: Callable[[jax.Array], Trials]) -> Callable[[jax.Array, int], Trials]:
    """sample(key, batch) = vmap(trial) over `batch` keys split from `key`."""
    def sample(key, batch):
        return jax.vmap(trial)(jax.random.split(key, batch))
    return sample


def masked_cross_entropy() -> Loss:
    """J = Σ_{n,t} w_nt ℓ_nt / Σ w, ℓ_nt = −log softmax(y_nt)[target_nt]; y (N, T, K),
    target (N, T) int, w (N, T).  dJ/dy_nt = w_nt (softmax(y_nt) − onehot(target_nt)) / Σ w."""
    def forward(y, target):
        labels, weight = target
        log_p = jax.nn.log_softmax(y, axis=-1)
        onehot = jax.nn.one_hot(labels, y.shape[-1], dtype=y.dtype)
        scale = weight.astype(y.dtype) / jnp.maximum(weight.sum(), 1).astype(y.dtype)
        return -(scale[..., None] * onehot * log_p).sum(), (log_p, onehot, scale)

    def backward(residuals, dloss):
        log_p, onehot, scale = residuals
        return (jnp.exp(log_p) - onehot) * (scale * dloss)[..., None]

    return Loss("masked_cross_entropy", forward, backward, lambda y, t: forward(y, t)[0])


def masked_mse() -> Loss:
    """J = Σ_{n,t,k} w_nt (y_ntk − d_ntk)² / (K Σ w); y, d (N, T, K), w (N, T).
    dJ/dy_ntk = 2 w_nt (y_ntk − d_ntk) / (K Σ w)."""
    def forward(y, target):
        d, weight = target
        scale = weight.astype(y.dtype) / (y.shape[-1] * jnp.maximum(weight.sum(), 1)).astype(y.dtype)
        err = y - d.astype(y.dtype)
        return (scale[..., None] * err * err).sum(), (err, scale)

    def backward(residuals, dloss):
        err, scale = residuals
        return 2 * err * (scale * dloss)[..., None]

    return Loss("masked_mse", forward, backward, lambda y, t: forward(y, t)[0])


def choices(y: jax.Array, decision_from: int) -> jax.Array:
    """The choice of each trial: argmax of the outputs averaged over the decision period
    (steps decision_from..T−1); 0 (still fixating) counts as no response.  y (N, T, K) -> (N,)."""
    return jnp.argmax(y[:, decision_from:].mean(axis=1), axis=-1)


def fraction_correct(decision_from: int, graded: Callable[[Trials], jax.Array] | None = None):
    """performance(y, trials) = mean over graded trials of [choice == label]; `graded`
    marks the trials that have a correct answer (all by default)."""
    def performance(y, trials):
        hit = (choices(y, decision_from) == trials.label).astype(jnp.float32)
        mask = jnp.ones_like(hit) if graded is None else graded(trials).astype(jnp.float32)
        return (hit * mask).sum() / jnp.maximum(mask.sum(), 1.0)
    return performance


def psychometric(choice: jax.Array, evidence: jax.Array, levels: jax.Array, option: int = 2
                 ) -> jax.Array:
    """Fraction of trials choosing `option` at each evidence level: choice, evidence (N,),
    levels (L,) -> (L,) (NaN where a level has no trial)."""
    at = evidence[None, :] == levels[:, None]
    chose = ((choice == option)[None, :] & at).sum(1).astype(jnp.float32)
    count = at.sum(1).astype(jnp.float32)
    return chose / jnp.where(count > 0, count, jnp.nan)


__all__ = ["Task", "Trials", "batched", "choices", "fraction_correct", "masked_cross_entropy",
           "masked_mse", "psychometric"]
