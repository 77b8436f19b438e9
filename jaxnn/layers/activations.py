"""Elementwise and normalising activations (no trainable weights).

Each keeps in its residuals what its derivative needs: often the output, not the input
(tanh' = 1 - y², σ' = y(1 - y)), which is what backprop stores in memory.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxnn.core import Layer, check_input, check_shape, make_layer


def _pointwise(name: str, forward: Callable, backward: Callable, apply: Callable | None = None,
               min_ndim: int = 1) -> Layer:
    def init(key, input_shape):
        return check_shape(name, input_shape, min_ndim=min_ndim), ()

    def fwd(params, x):
        check_input(name, x)
        return forward(x)

    def bwd(params, residuals, dy):
        return (), backward(residuals, dy)

    def app(params, x):
        assert apply is not None  # app is used only when apply is given
        check_input(name, x)
        return apply(x)

    return make_layer(name, init, fwd, bwd, None if apply is None else app)


def Identity() -> Layer:
    """y = x.  Backward: dx = dy."""
    return _pointwise("Identity", lambda x: (x, ()), lambda r, dy: dy)


def Tanh() -> Layer:
    """y = tanh(x).  Backward: dx = dy · (1 - y²)."""
    def forward(x):
        y = jnp.tanh(x)
        return y, y
    return _pointwise("Tanh", forward, lambda y, dy: dy * (1 - y * y))


def Sigmoid() -> Layer:
    """y = σ(x) = 1 / (1 + e^{-x}).  Backward: dx = dy · y (1 - y)."""
    def forward(x):
        y = jax.nn.sigmoid(x)
        return y, y
    return _pointwise("Sigmoid", forward, lambda y, dy: dy * y * (1 - y))


def Relu() -> Layer:
    """y = max(x, 0).  Backward: dx = dy · [x > 0] (the derivative at 0 is taken as 0)."""
    def forward(x):
        return jax.nn.relu(x), x > 0
    return _pointwise("Relu", forward,
                      lambda positive, dy: jnp.where(positive, dy, jnp.zeros((), dy.dtype)))


def Softmax(axis: int = -1) -> Layer:
    """y_k = e^{x_k} / Σ_j e^{x_j} along `axis`.

    Backward (Jacobian ∂y_k/∂x_j = y_k(δ_kj - y_j)): dx = y ⊙ (dy - Σ_k dy_k y_k).
    """
    def forward(x):
        y = jax.nn.softmax(x, axis=axis)
        return y, y
    return _pointwise("Softmax", forward,
                      lambda y, dy: y * (dy - (dy * y).sum(axis=axis, keepdims=True)))


def LogSoftmax(axis: int = -1) -> Layer:
    """y_k = x_k - log Σ_j e^{x_j} along `axis`.

    Backward (∂y_k/∂x_j = δ_kj - softmax(x)_j): dx = dy - softmax(x) · Σ_k dy_k,
    with softmax(x) = e^{y}.
    """
    def forward(x):
        y = jax.nn.log_softmax(x, axis=axis)
        return y, y
    return _pointwise("LogSoftmax", forward,
                      lambda y, dy: dy - jnp.exp(y) * dy.sum(axis=axis, keepdims=True))


def Heaviside(straight_through: bool = False) -> Layer:
    """The perceptron's step: y = 1 if x > 0 else 0 (same dtype as x).

    Its true derivative is 0 almost everywhere (undefined at 0), so
      - straight_through=False: dx = 0 — nothing flows back through a step;
      - straight_through=True: dx = dy — the straight-through estimator (Bengio et al.
        2013), treating the step as the identity in the backward pass. `apply` is then
        written as x + stop_gradient(step(x) - x), so autodiff computes the same rule.
    """
    def step(x):
        return (x > 0).astype(x.dtype)

    if straight_through:
        return _pointwise("Heaviside", lambda x: (step(x), ()), lambda r, dy: dy,
                          apply=lambda x: x + jax.lax.stop_gradient(step(x) - x))
    return _pointwise("Heaviside", lambda x: (step(x), ()), lambda r, dy: jnp.zeros_like(dy))
