"""Losses, each with a value and a hand-written gradient.

A loss follows the layer contract, with the target in place of params:

    apply(pred, target)           -> scalar
    forward(pred, target)         -> (scalar, residuals)
    backward(residuals, dloss)    -> dpred           (dloss: the scalar cotangent, 1.0 for a gradient)

Reductions are explicit: `reduction="sum"` adds the per-example terms, `"mean"` divides the
sum by the number of examples (every axis but the class axis for classification losses;
every element for the regression losses). Shapes never broadcast silently: a mismatch is a
`ValueError` naming the loss. Float hyperparameters (hinge's margin) must be finite.

Integer labels (`softmax_cross_entropy`) must lie in [0, K). The range is checked only where
the labels are concrete values, i.e. outside `jax.jit` (and outside vmap or scan): a label
outside the range, negative ones included, is then a `ValueError` naming the loss, the label,
its index and K. Under `jit` the labels are tracers and the check cannot run; an
out-of-range label then becomes an all-zero target row, so that example adds 0 to the loss
and 0 to the gradient (it still counts in the "mean" divisor) — a silently wrong number.
Check labels where they are loaded, or call the loss once eagerly on a batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class Loss(NamedTuple):
    """A loss: a name and three pure functions (see the module docstring)."""

    name: str
    forward: Callable[[Array, Array], tuple[Array, Any]]
    backward: Callable[[Any, Array], Array]
    apply: Callable[[Array, Array], Array]
    reduction: str = "mean"  # "sum" or "mean"
    total: Callable[[Array, Array], Array] | None = None  # the sum of the terms, whatever the reduction


def _loss(name, forward, backward, reduction="mean", count=None) -> Loss:
    """count(pred): how many terms "mean" divides by, so `total` can undo it."""
    def apply(pred, target):
        return forward(pred, target)[0]

    def total(pred, target):
        return apply(pred, target) * count(pred) if reduction == "mean" else apply(pred, target)

    return Loss(name, forward, backward, apply, reduction, total)


def _check_reduction(name, reduction):
    if reduction not in ("sum", "mean"):
        raise ValueError(f"{name}: reduction must be 'sum' or 'mean', got {reduction!r}")
    return reduction


def _check_pred(name, pred):
    if not jnp.issubdtype(jnp.asarray(pred).dtype, jnp.floating):
        raise TypeError(f"{name}: expected floating-point predictions, got dtype {pred.dtype}")


def check_labels(name: str, labels: Any, classes: int, what: str = "label") -> None:
    """Refuse an integer label outside [0, classes) with a ValueError naming the loss, the
    first bad label, its index and the number of classes. Traced labels (inside jit, vmap,
    scan) cannot be read and pass unchecked (see the module docstring)."""
    if isinstance(labels, jax.core.Tracer):
        return
    values = np.asarray(labels)
    bad = (values < 0) | (values >= classes)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name}: {what} {values[where]} at index {where} is outside "
                         f"[0, {classes}) ({classes} classes; {int(bad.sum())} bad {what}(s) "
                         f"in all)")


def _finite(name, what, value):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name}: {what} must be a real number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name}: {what} must be finite, got {value!r}")
    return float(value)


def _same_shape(name, pred, target):
    _check_pred(name, pred)
    if pred.shape != target.shape:
        raise ValueError(f"{name}: expected target of shape {tuple(pred.shape)} (same as the "
                         f"predictions), got {tuple(target.shape)}")


def _reduce(terms, reduction, count):
    total = terms.sum()
    return total / count if reduction == "mean" else total


def _elementwise(name, reduction, term, dterm) -> Loss:
    """A loss that is a reduction over elementwise terms term(pred, target)."""
    reduction = _check_reduction(name, reduction)

    def forward(pred, target):
        _same_shape(name, pred, target)
        target = target.astype(pred.dtype)
        count = pred.size if reduction == "mean" else 1
        return _reduce(term(pred, target), reduction, count), (pred, target, count)

    def backward(residuals, dloss):
        pred, target, count = residuals
        return dterm(pred, target) * (dloss / count)

    return _loss(name, forward, backward, reduction, count=lambda pred: pred.size)


def sum_of_squares() -> Loss:
    """J = Σ_k (y_k - d_k)²  (no ½; the sum over every element).  dJ/dy = 2 (y - d)."""
    return _elementwise("sum_of_squares", "sum",
                        lambda y, d: (y - d) ** 2, lambda y, d: 2 * (y - d))


def mse(reduction: str = "mean") -> Loss:
    """Mean squared error, (1/M) Σ (y - d)² over all M elements ("sum": Σ (y - d)²).

    pred, target: the same shape. dJ/dy = 2 (y - d) / M.
    """
    return _elementwise("mse", reduction, lambda y, d: (y - d) ** 2, lambda y, d: 2 * (y - d))


def binary_cross_entropy(reduction: str = "mean", from_logits: bool = True) -> Loss:
    """Binary cross-entropy with targets t ∈ [0, 1], pred and target the same shape.

    from_logits=True (pred = z, stable form):  ℓ = softplus(z) - t·z,  dℓ/dz = σ(z) - t.
    from_logits=False (pred = p ∈ (0, 1)):     ℓ = -t log p - (1-t) log(1-p),
                                               dℓ/dp = (p - t) / (p (1 - p)).
    "mean" divides by the number of elements.
    """
    if from_logits:
        return _elementwise("binary_cross_entropy", reduction,
                            lambda z, t: jax.nn.softplus(z) - t * z,
                            lambda z, t: jax.nn.sigmoid(z) - t)
    return _elementwise("binary_cross_entropy", reduction,
                        lambda p, t: -t * jnp.log(p) - (1 - t) * jnp.log1p(-p),
                        lambda p, t: (p - t) / (p * (1 - p)))


def hinge(margin: float = 1.0, reduction: str = "mean") -> Loss:
    """Hinge loss with labels t ∈ {-1, +1}, pred and target the same shape.

    ℓ = max(0, margin - t·y);  dℓ/dy = -t · [margin - t·y > 0] (0 at the kink).
    """
    margin = _finite("hinge", "margin", margin)
    return _elementwise("hinge", reduction,
                        lambda y, t: jax.nn.relu(margin - t * y),
                        lambda y, t: jnp.where(margin - t * y > 0, -t, jnp.zeros((), y.dtype)))


def perceptron(reduction: str = "mean") -> Loss:
    """Rosenblatt's perceptron criterion, ℓ = max(0, -t·y), t ∈ {-1, +1}: the hinge at margin 0.

    Its gradient step w += α t x on a misclassified example is the 1957 perceptron rule.
    """
    loss = hinge(0.0, reduction)
    return loss._replace(name="perceptron")


def softmax_cross_entropy(reduction: str = "mean") -> Loss:
    """Cross-entropy between softmax(logits) and the targets, over the last axis.

    logits: (..., K). target: integer labels (...) in [0, K) (checked when concrete; not
    under jit, see the module docstring), or class probabilities / one-hot vectors (..., K)
    of a float dtype.
        ℓ = -Σ_k t_k log softmax(z)_k = -Σ_k t_k z_k + (Σ_k t_k) logsumexp(z)
        dℓ/dz = softmax(z) · Σ_k t_k - t     (= softmax(z) - onehot(label) for labels)
    "mean" divides by the number of examples (the product of the leading axes).
    """
    name = "softmax_cross_entropy"
    reduction = _check_reduction(name, reduction)

    def forward(logits, target):
        _check_pred(name, logits)
        if jnp.issubdtype(target.dtype, jnp.integer):
            if target.shape != logits.shape[:-1]:
                raise ValueError(f"{name}: integer labels must have shape {tuple(logits.shape[:-1])} "
                                 f"(logits' shape without the class axis), got {tuple(target.shape)}")
            check_labels(name, target, logits.shape[-1])
            target = jax.nn.one_hot(target, logits.shape[-1], dtype=logits.dtype)
        else:
            _same_shape(name, logits, target)
            target = target.astype(logits.dtype)
        log_p = jax.nn.log_softmax(logits, axis=-1)
        count = logits.size // logits.shape[-1] if reduction == "mean" else 1
        return _reduce(-(target * log_p), reduction, count), (log_p, target, count)

    def backward(residuals, dloss):
        log_p, target, count = residuals
        d = jnp.exp(log_p) * target.sum(axis=-1, keepdims=True) - target
        return d * (dloss / count)

    return _loss(name, forward, backward, reduction, count=lambda z: z.size // z.shape[-1])


__all__ = ["Loss", "binary_cross_entropy", "check_labels", "hinge", "mse", "perceptron",
           "softmax_cross_entropy", "sum_of_squares"]
