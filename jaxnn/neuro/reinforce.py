"""REINFORCE: the score-function policy gradient, for policies built from jaxnn layers.

A policy is a jaxnn `Layer` mapping observations (..., obs) to action logits (..., K), with
π_θ(a|s) = softmax(policy.apply(θ, s))_a. For N episodes of T steps (s, a, r), a mask
m_{n,t} = 1 while episode n is running, and the return-to-go G_t = Σ_{k≥t} γ^{k−t} r_k,

    ∇_θ J = E[ Σ_t ∇_θ log π_θ(a_t|s_t) (G_t − b_t) ]                      (Williams 1992)

for any baseline b_t that does not depend on a_t (E_a[∇ log π(a|s)] = 0, so it only
changes the variance). With γ = 1 this is exactly the gradient of the expected return
J = E[Σ_t r_t]; with γ < 1 it is the usual estimate that leaves out the factor γ^t on step
t, not the gradient of E[G_0]. The sample estimate is minus the gradient of the surrogate

    L(θ) = −(1/N) Σ_{n,t} m_{n,t} A_{n,t} log π_θ(a_{n,t}|s_{n,t}),   A = G − b held fixed,

which is softmax cross-entropy (summed) against the soft target w_{n,t} onehot(a_{n,t}),
w_{n,t} = m_{n,t} A_{n,t} / N (`episode_weights`). Its gradient with respect to the logits is

    dL/dz_{n,t} = w_{n,t} (softmax(z_{n,t}) − onehot(a_{n,t}))

so `jaxnn.value_and_grad(policy, reinforce_loss(), method)` with the target
(actions, weights) gives the estimate by autodiff (`jax.value_and_grad` of L) or by the
layers' hand-written backward, and `reinforce_step` is `jaxnn.train_step` on L: one step
`(train_state, (obs, (actions, weights)), key) -> (train_state, metrics)`.
Agents that learn by reward (the bandit's) are in `jaxnn.neuro.agents`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxnn.core import Layer
from jaxnn.losses import Loss, check_labels, softmax_cross_entropy
from jaxnn.train.step import Rule, TrainStep, gradient, train_step

Array = jax.Array
BASELINES = ("none", "mean", "per_step")


def sample_actions(key: jax.Array, logits: Array) -> tuple[Array, Array]:
    """a ~ softmax(logits) on the last axis. logits (..., K) -> (actions (...) int32,
    log π(a) (...))."""
    actions = jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)
    return actions, log_prob(logits, actions)


def log_prob(logits: Array, actions: Array) -> Array:
    """log softmax(logits)_a. logits (..., K), actions (...) integer -> (...)."""
    if not jnp.issubdtype(actions.dtype, jnp.integer):
        raise TypeError(f"log_prob: actions must be integers, got dtype {actions.dtype}")
    if actions.shape != logits.shape[:-1]:
        raise ValueError(f"log_prob: actions must have shape {tuple(logits.shape[:-1])} (the "
                         f"logits' without the action axis), got {tuple(actions.shape)}")
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(log_p, actions[..., None], axis=-1)[..., 0]


def discounted_returns(rewards: Array, gamma: float) -> Array:
    """G_t = r_t + γ G_{t+1}, G_T = 0, along the last axis. rewards (..., T) -> (..., T).

    Rewards after an episode ends must already be zero (they are masked by the rollout).
    """
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"discounted_returns: gamma must be in [0, 1], got {gamma}")
    rewards = jnp.moveaxis(rewards, -1, 0)

    def step(g_next, r):
        g = r + gamma * g_next
        return g, g

    _, g = lax.scan(step, jnp.zeros_like(rewards[0]), rewards, reverse=True)
    return jnp.moveaxis(g, 0, -1)


def advantages(returns: Array, mask: Array, baseline: str = "per_step",
               normalise: bool = False) -> Array:
    """A = G − b over a batch of episodes. returns, mask: (N, T) -> (N, T), zero where m = 0.

    baseline, with every mean taken over running steps only (m = 1) and episode n left out:
      "none":     b = 0;
      "mean":     b_n = Σ_{k≠n} Σ_s m_{k,s} G_{k,s} / Σ_{k≠n} Σ_s m_{k,s}, one value for all
                  of episode n's steps (none of episode n's own returns, at any step);
      "per_step": b_{n,t} = Σ_{k≠n} m_{k,t} G_{k,t} / Σ_{k≠n} m_{k,t}.
    Where no other episode has a running step to average (a batch of one episode, or, for
    "per_step", a step only episode n reaches) b = 0 there: no baseline, never the
    episode's own returns. Leaving episode n out keeps b independent of its actions, so
    with i.i.d. episodes the estimate stays unbiased for every baseline.
    normalise=True divides A by its std over the batch's running steps (a common rescaling:
    within a batch it changes the step size, not the direction; the std depends on the
    batch's own actions, so the expected update is no longer exactly the policy gradient).
    """
    if baseline not in BASELINES:
        raise ValueError(f"advantages: baseline must be one of {BASELINES}, got {baseline!r}")
    if returns.ndim != 2 or mask.shape != returns.shape:
        raise ValueError(f"advantages: expected returns and mask of one shape (N, T), got "
                         f"{tuple(returns.shape)} and {tuple(mask.shape)}")
    mask = mask.astype(returns.dtype)
    g = returns * mask
    if baseline == "none":
        adv = g
    else:
        if baseline == "mean":  # every other episode's running steps, all steps pooled
            own_total, own_count = g.sum(1, keepdims=True), mask.sum(1, keepdims=True)
            total, count = g.sum(), mask.sum()
        else:  # "per_step": the other episodes running at the same step
            own_total, own_count = g, mask
            total, count = g.sum(0, keepdims=True), mask.sum(0, keepdims=True)
        others_total, others_count = total - own_total, count - own_count
        b = jnp.where(others_count > 0, others_total / jnp.maximum(others_count, 1.0), 0.0)
        adv = (g - b) * mask
    if normalise:
        n = jnp.maximum(mask.sum(), 1.0)
        mean = adv.sum() / n
        std = jnp.sqrt((((adv - mean) * mask) ** 2).sum() / n)
        adv = adv / (std + 1e-8)
    return adv


def episode_weights(adv: Array, mask: Array) -> Array:
    """The per-step weights of the surrogate, w = m A / N (N = adv.shape[0] episodes).
    adv, mask (N, ...) -> (N, ...) in adv's dtype."""
    if mask.shape != adv.shape:
        raise ValueError(f"episode_weights: advantages and mask must share one shape, got "
                         f"{tuple(adv.shape)} and {tuple(mask.shape)}")
    return adv * mask.astype(adv.dtype) / adv.shape[0]


def reinforce_loss() -> Loss:
    """The surrogate L = −Σ w log softmax(z)_a (see the module docstring).

    logits (..., K); target a pair (actions (...) integer, weights (...) from
    `episode_weights`). It is softmax cross-entropy (summed) against the soft target
    w · onehot(a), so dL/dz = w (softmax(z) − onehot(a)). An action outside [0, K) is a
    ValueError where the actions are concrete; under jit it cannot be checked and the step
    drops out of the loss (an all-zero one-hot row).
    """
    name = "reinforce"
    cross_entropy = softmax_cross_entropy("sum")

    def forward(logits, target):
        actions, weights = target
        if not jnp.issubdtype(actions.dtype, jnp.integer):
            raise TypeError(f"{name}: actions must be integers, got dtype {actions.dtype}")
        if actions.shape != logits.shape[:-1] or weights.shape != actions.shape:
            raise ValueError(f"{name}: actions and weights must have shape "
                             f"{tuple(logits.shape[:-1])} (the logits' without the action "
                             f"axis), got {tuple(actions.shape)} and {tuple(weights.shape)}")
        check_labels(name, actions, logits.shape[-1], "action")  # concrete actions only
        soft = jax.nn.one_hot(actions, logits.shape[-1], dtype=logits.dtype)
        return cross_entropy.forward(logits, soft * weights.astype(logits.dtype)[..., None])

    apply = lambda logits, target: forward(logits, target)[0]  # noqa: E731
    return cross_entropy._replace(name=name, forward=forward, apply=apply, total=apply)


def choice_loss(decision_from: int) -> Loss:
    """The surrogate for one choice per trial read off a sequence of outputs, as
    `tasks.choices` reads it: z_n = mean_{t ≥ t0} y_{n,t}, π_n = softmax(z_n),

        L = −Σ_n w_n log π_n(a_n)
        dL/dy_{n,t} = w_n (π_n − onehot(a_n)) / (T − t0)   for t ≥ t0, 0 before.

    y (N, T, K); target (actions (N,) integer, weights (N,) from `episode_weights`).
    """
    name = "choice_reinforce"
    if not isinstance(decision_from, int) or decision_from < 0:
        raise ValueError(f"{name}: decision_from must be an int >= 0, got {decision_from!r}")
    inner = reinforce_loss()

    def forward(y, target):
        if y.ndim != 3 or not decision_from < y.shape[1]:
            raise ValueError(f"{name}: expected outputs (N, T, K) with T > {decision_from}, got "
                             f"{tuple(y.shape)}")
        z = choice_logits(y, decision_from)
        value, residuals = inner.forward(z, target)
        return value, (residuals, jnp.zeros((0, *y.shape), y.dtype))  # a shape token

    def backward(residuals, dloss):
        residuals, token = residuals
        n, t, k = token.shape[1:]
        dz = inner.backward(residuals, dloss) / (t - decision_from)
        return jnp.concatenate([jnp.zeros((n, decision_from, k), dz.dtype),
                                jnp.broadcast_to(dz[:, None, :], (n, t - decision_from, k))], 1)

    apply = lambda y, target: forward(y, target)[0]  # noqa: E731
    return inner._replace(name=name, forward=forward, backward=backward, apply=apply, total=apply)


def choice_logits(y: Array, decision_from: int) -> Array:
    """The mean output over the decision period: y (N, T, K) -> (N, K)."""
    return y[:, decision_from:].mean(axis=1)


def reinforce_step(policy: Layer, optimizer: optax.GradientTransformation | float,
                   method: str = "autodiff", *, loss: Loss | None = None) -> TrainStep:
    """One policy-gradient update from a batch of N episodes: `jaxnn.train_step` on the
    surrogate `loss` (default `reinforce_loss()`; `choice_loss(t0)` for one choice per
    trial), θ ← θ + optimizer(∇̂J) with ∇̂J = −dL/dθ by `method` ("autodiff" | "manual").

        init, step = reinforce_step(policy, optax.adam(1e-2))
        ts, metrics = step(ts, (obs, (actions, episode_weights(adv, mask))), key)

    obs (N, T, ...) as the policy takes it, actions and weights (N, T) (or (N,) for one
    action per episode). A policy that draws noise must be given the key it acted with, so
    its noise is the same noise the actions were drawn under.
    """
    return train_step(policy, reinforce_loss() if loss is None else loss, optimizer, method)


def on_policy(collect: Callable, loss: Loss | None = None, method: str = "autodiff", *,
              init: Callable | None = None) -> Rule:
    """REINFORCE as a rule whose episodes are drawn, inside the step, by the policy it trains:

        (obs, target), act_key, rule_state, metrics = collect(model, params, model_state,
                                                              rule_state, key)
        updates = dL/dθ of `loss` (default `reinforce_loss()`) on (obs, target), by `method`

    target is (actions, `episode_weights(adv, mask)`) for `reinforce_loss`, or whatever
    `loss` takes (the task's own loss gives supervised learning on trials drawn in the step,
    the same rule otherwise). act_key is the key the policy acted with: a policy that draws
    noise takes its gradient under the same noise. The rule's state is collect's own (a
    record of returns, say), `init(params) -> state` (default: none). ascend=False; the
    loop's batch is ignored. `jaxnn.make_step(policy, on_policy(...), optimizer)` is the step.
    metrics: collect's, plus the surrogate's {"loss"}.
    """
    descend = gradient(reinforce_loss() if loss is None else loss, method)

    def update(model, params, model_state, batch, rule_state, key):
        episodes, act_key, rule_state, metrics = collect(model, params, model_state, rule_state, key)
        updates, model_state, _, m = descend.update(model, params, model_state, episodes, (), act_key)
        return updates, model_state, rule_state, {**metrics, **m}

    return Rule(f"on_policy[{descend.name}]", update, False, init or (lambda params: ()))


__all__ = [
    "BASELINES", "on_policy", "advantages", "choice_logits", "choice_loss", "discounted_returns",
    "episode_weights", "log_prob", "reinforce_loss", "reinforce_step", "sample_actions",
]
