"""Dropout (Srivastava et al. 2014), inverted: the expected output equals the input."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnn.core import Layer, check_input, check_shape, check_train, fail, make_stateful_layer
from jaxnn.layers._checks import finite_real


def Dropout(rate: float) -> Layer:
    """Zero each input with probability `rate` and scale the survivors by 1 / (1 - rate).

    `rate` is the probability of *dropping* (not of keeping). Shapes: any x -> y, same shape.
    Params and state are `()`.

    train=True:  m ~ Bernoulli(1 - rate) per element, drawn from `key` (required: a missing
                 key is an error naming the layer, never a silently fixed mask); the same key
                 gives the same mask whatever the input's dtype;
                 y = x ⊙ m / (1 - rate).
    train=False: y = x; no key needed.
    Backward: dC/dx = dy ⊙ m / (1 - rate) (the same mask; dy itself at eval).
    """
    name = "Dropout"
    rate = finite_real(name, "rate", rate)
    if not 0 <= rate < 1:
        fail(name, f"rate (the probability of dropping) must be in [0, 1), got {rate!r}")

    def init(key, input_shape):
        return check_shape(name, input_shape, min_ndim=1), (), ()

    def forward(params, state, x, *, key=None, train):
        check_input(name, x)
        if not check_train(name, train) or rate == 0:
            return x, jnp.ones((), x.dtype), state
        if key is None:
            fail(name, "train=True draws a random mask and needs a key: pass key=jax.random.key(...)"
                       " (or train=False for evaluation)", exc=TypeError)
        keep = jax.random.bernoulli(key, jnp.float32(1 - rate), x.shape)  # same mask in any dtype
        scale = jnp.where(keep, jnp.asarray(1 / (1 - rate), x.dtype), jnp.zeros((), x.dtype))
        return x * scale, scale, state

    def backward(params, scale, dy):
        return (), dy * scale

    return make_stateful_layer(name, init, forward, backward)


__all__ = ["Dropout"]
