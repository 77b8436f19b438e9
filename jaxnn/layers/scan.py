"""Scan: one layer applied at every step of a time axis, its backward a reverse scan."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxnn.core import Layer, LayerTypeError, check_residuals, check_shape, fail


def _time_major(tree):
    return jax.tree.map(lambda a: jnp.moveaxis(a, 1, 0), tree)


def _batch_major(tree):
    return jax.tree.map(lambda a: jnp.moveaxis(a, 0, 1), tree)


def Scan(layer: Layer) -> Layer:
    """y[:, t] = F(x[:, t]) for every step t, with F's weights shared across time.

    Shapes: x (N, T, ...) -> y (N, T, ...out); F sees (N, ...) at each step. The forward is
    a `lax.scan` over t whose stacked residuals are F's residuals at every step (so F's
    residuals must be arrays). F's state is carried from step to step (s_{t+1} = F's new
    state at t) and step t draws its random numbers from fold_in(key, t). Backward, a reverse
    `lax.scan`:
        dC/dx[:, t] = dx from F.backward(W, r_t, dy[:, t])
        dC/dW       = Σ_t dW_t      (the same weights are used at every step)
    """
    if not isinstance(layer, Layer):
        raise LayerTypeError(f"Scan: expected a Layer, got {type(layer).__name__}")
    name = f"Scan({layer.name})"

    def init(key, input_shape):
        n, t, *rest = check_shape(name, input_shape, min_ndim=2)
        out_shape, params, state = layer.init(key, (n, *rest))
        return (out_shape[0], t, *out_shape[1:]), params, state

    def check(x):
        if not hasattr(x, "ndim") or x.ndim < 2:
            fail(name, f"expected an input (N, T, ...) with a time axis, got {getattr(x, 'shape', x)}")

    def step_key(key, t):
        return None if key is None else jax.random.fold_in(key, t)

    def forward(params, state, x, *, key=None, train):
        check(x)

        def step(state, inputs):
            t, x_t = inputs
            y_t, r_t, state = layer.forward(params, state, x_t, key=step_key(key, t), train=train)
            check_residuals(name, r_t)
            return state, (y_t, r_t)

        steps = jnp.arange(x.shape[1])
        state, (ys, residuals) = lax.scan(step, state, (steps, jnp.moveaxis(x, 1, 0)))
        return _batch_major(ys), residuals, state

    def backward(params, residuals, dy):
        def step(dparams, inputs):
            r_t, dy_t = inputs
            dparams_t, dx_t = layer.backward(params, r_t, dy_t)
            return jax.tree.map(jnp.add, dparams, dparams_t), dx_t

        zero = jax.tree.map(jnp.zeros_like, params)
        dparams, dxs = lax.scan(step, zero, (residuals, _time_major(dy)), reverse=True)
        return dparams, _batch_major(dxs)

    def apply(params, state, x, *, key=None, train):
        check(x)

        def step(state, inputs):
            t, x_t = inputs
            y_t, state = layer.apply(params, state, x_t, key=step_key(key, t), train=train)
            return state, y_t

        state, ys = lax.scan(step, state, (jnp.arange(x.shape[1]), jnp.moveaxis(x, 1, 0)))
        return _batch_major(ys), state

    return Layer(name, init, forward, backward, apply, (layer,))


__all__ = ["Scan"]
