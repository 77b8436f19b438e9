"""Rosenblatt's perceptron (1957): threshold units and their error-correcting rule.

A bank of k units on n inputs has Dense params w (n, k), b (k,). Unit j fires

    f_j(x) = 1 if w_j·x + b_j > 0 else 0

and after each sample, with desired output d ∈ {0, 1}^k, every unit corrects itself:

    w_j ← w_j + η (d_j − f_j(x)) x        b_j ← b_j + η (d_j − f_j(x))

so a unit changes only when it errs. The samples are taken one at a time, in order, inside a
jitted `lax.scan`. Ten units trained on one-hot targets are ten one-vs-rest classifiers;
the class is argmax_j (w_j·x + b_j). The averaged perceptron (Freund & Schapire 1999)
predicts with the mean of the weights after every sample seen.

Novikoff (1962): if some unit vector u and bias separate the data with margin γ, and every
augmented input (x, 1) has norm ≤ R, the rule from zero weights makes at most (R/γ)²
mistakes, whatever η.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnn.layers.dense import DenseParams
from jaxnn.neuro.rules.base import check_layer_index, layer_io, zero_except
from jaxnn.train.step import Rule, make_rule


class Averaged(NamedTuple):
    """The averaged perceptron's bookkeeping (Daumé's trick): after T samples whose corrections
    were Δ_1..Δ_T, correction = Σ_t (t − 1) Δ_t and count = T, so the mean of the T weight
    vectors seen after each sample is w_T − correction / T (`averaged_params`)."""

    correction: DenseParams
    count: jax.Array  # type: ignore[assignment]  # float scalar; the field shadows tuple.count


def net_input(params: DenseParams, x: jax.Array) -> jax.Array:
    """z = x @ w + b (b broadcast explicitly over the leading axes). x (..., n) -> (..., k)."""
    z = x @ params.w
    return z + params.b.reshape((1,) * (z.ndim - 1) + (-1,))


def fires(params: DenseParams, x: jax.Array) -> jax.Array:
    """f(x) = 1[x @ w + b > 0] in the params' dtype. x (..., n) -> (..., k)."""
    return (net_input(params, x) > 0).astype(params.w.dtype)


def classify(params: DenseParams, x: jax.Array) -> jax.Array:
    """One-vs-rest class: argmax_j (x @ w + b)_j. x (N, n) -> (N,) int32."""
    return jnp.argmax(net_input(params, x), axis=-1).astype(jnp.int32)


def one_vs_rest(labels: jax.Array, num_classes: int, dtype=jnp.float32) -> jax.Array:
    """Desired outputs d: (N,) int labels -> (N, num_classes) with d[i, labels[i]] = 1, else 0."""
    return jax.nn.one_hot(labels, num_classes, dtype=dtype)


def _check(params, x, d, lr):
    if not isinstance(params, DenseParams):
        raise TypeError(f"perceptron: params must be DenseParams(w, b), got {type(params).__name__}")
    n, k = params.w.shape
    if x.ndim != 2 or x.shape[1] != n:
        raise ValueError(f"perceptron: expected x of shape (N, {n}), got {tuple(x.shape)}")
    if d.shape != (x.shape[0], k):
        raise ValueError(f"perceptron: expected desired outputs d of shape ({x.shape[0]}, {k}), "
                         f"got {tuple(d.shape)}")
    if isinstance(lr, (int, float)) and not lr > 0:
        raise ValueError(f"perceptron: the learning rate η must be > 0, got {lr!r}")


def _scan(params: DenseParams, avg: Averaged | None, x, d, lr, unroll):
    """The online pass shared by both variants. The scan keeps w transposed, (k, n): each
    unit's weights contiguous in memory."""
    _check(params, x, d, lr)
    lr = jnp.asarray(lr, params.w.dtype)

    def body(carry, xd):
        (wt, b), avg = carry
        xi, di = xd
        err = di - (wt @ xi + b > 0).astype(wt.dtype)  # (k,) in {-1, 0, 1}
        dw, db = lr * err[:, None] * xi[None, :], lr * err  # the rule, unit by unit
        if avg is not None:
            (uw, ub), c = avg
            avg = ((uw + c * dw, ub + c * db), c + 1)
        return ((wt + dw, b + db), avg), jnp.sum(err != 0).astype(jnp.int32)

    start = None if avg is None else ((avg.correction.w.T, avg.correction.b), avg.count)
    ((wt, b), carried), mistakes = jax.lax.scan(body, ((params.w.T, params.b), start), (x, d),
                                                unroll=unroll)
    if carried is not None:
        (uw, ub), c = carried
        avg = Averaged(DenseParams(uw.T, ub), c)
    return DenseParams(wt.T, b), avg, mistakes


def perceptron_epoch(params: DenseParams, x: jax.Array, d: jax.Array, lr: float = 1.0,
                     *, unroll: int = 1) -> tuple[DenseParams, jax.Array]:
    """The rule over x (N, n), d (N, k) in order. Returns (params, mistakes (N,) int32:
    how many units erred on each sample, before their correction)."""
    params, _, mistakes = _scan(params, None, x, d, lr, unroll)
    return params, mistakes


def averaged_start(params: DenseParams) -> Averaged:
    """Nothing averaged yet, for `averaged_epoch`."""
    zeros = jax.tree.map(jnp.zeros_like, params)
    return Averaged(zeros, jnp.zeros((), params.w.dtype))


def averaged_epoch(params: DenseParams, avg: Averaged, x: jax.Array, d: jax.Array,
                   lr: float = 1.0, *, unroll: int = 1):
    """`perceptron_epoch` that also keeps the running mean of the weights in `avg`.
    Returns (params, avg, mistakes (N,))."""
    return _scan(params, avg, x, d, lr, unroll)


def averaged_params(params: DenseParams, avg: Averaged) -> DenseParams:
    """The mean of the weights after each sample so far: w − correction / T (w before any)."""
    count = jnp.maximum(avg.count, 1)
    return jax.tree.map(lambda p, u: p - u / count, params, avg.correction)


def _metrics(wrong, d):
    total = wrong.sum()
    return {"mistakes": total, "loss": total.astype(d.dtype) / d.size}


def perceptron(lr: float = 1.0, *, layer: int = -1, averaged: bool = False) -> Rule:
    """The rule on Dense layer `layer` of a serial model, fed that layer's input (so it can
    sit on top of fixed features). batch = (x, d), d (B, k) in {0, 1}.

    updates = (params after the online pass over the batch) − params, ascend=True: apply it
    with η = 1 (the rate lives here, because within a batch each sample sees the weights the
    one before left). With averaged=True the rule state is `Averaged`; read the mean weights
    with `averaged_params(params[layer], state)`.
    Metrics: {"mistakes": units that erred, summed over the batch; "loss": the fraction of
    unit decisions that were wrong}. Gradient descent on the same units: `gradient` with
    `jaxnn.losses.perceptron()` or `hinge()` on targets t = 2d − 1.
    """
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"perceptron: the learning rate η must be > 0, got {lr!r}")

    def updates_for(params, i, new):
        return zero_except(params, i, jax.tree.map(jnp.subtract, new, params[i]))

    def plain(model, params, batch, model_state):
        x_in, _ = layer_io(model, params, batch[0], layer, state=model_state, name="perceptron")
        i = check_layer_index("perceptron", params, layer)
        new, wrong = perceptron_epoch(params[i], x_in, batch[1], lr)
        return updates_for(params, i, new), _metrics(wrong, batch[1])

    def with_average(model, params, batch, state, model_state):
        x_in, _ = layer_io(model, params, batch[0], layer, state=model_state, name="perceptron")
        i = check_layer_index("perceptron", params, layer)
        new, state, wrong = averaged_epoch(params[i], state, x_in, batch[1], lr)
        return updates_for(params, i, new), state, _metrics(wrong, batch[1])

    if not averaged:
        return make_rule("perceptron", plain, ascend=True)

    def init(params):
        return averaged_start(params[check_layer_index("perceptron", params, layer)])

    return make_rule("averaged_perceptron", with_average, ascend=True, init=init)


def novikoff_bound(x: jax.Array, labels: jax.Array, u: jax.Array, c: float) -> tuple[float, float]:
    """(R, γ) for Novikoff's bound (R/γ)² with a separating (u, c): augmented inputs
    a = (x, 1), R = max ‖a‖, γ = min_i t_i (u·x_i + c) / ‖(u, c)‖, t = 2·labels − 1.
    x (N, n), labels (N,) in {0, 1}. γ ≤ 0 means (u, c) does not separate the data."""
    aug = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
    v = jnp.concatenate([u, jnp.asarray([c], u.dtype)])
    t = 2 * labels.astype(x.dtype) - 1
    return float(jnp.linalg.norm(aug, axis=1).max()), float((t * (aug @ v)).min() / jnp.linalg.norm(v))


__all__ = ["Averaged", "averaged_epoch", "averaged_params", "averaged_start", "classify", "fires",
           "net_input", "novikoff_bound", "one_vs_rest", "perceptron", "perceptron_epoch"]
