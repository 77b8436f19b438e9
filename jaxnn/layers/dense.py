"""Dense (fully connected) layer."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnn import initializers
from jaxnn.core import Layer, check_input, check_shape, make_layer, positive_ints


class DenseParams(NamedTuple):
    w: jax.Array  # (in, out)
    b: jax.Array  # (out,)


def Dense(
    features: int,
    w_init: initializers.Initializer = initializers.lecun_normal,
    b_init: initializers.Initializer = initializers.zeros,
    dtype=jnp.float32,
) -> Layer:
    """An affine map on the last axis: y = x @ w + b.

    Shapes: x (..., in) -> y (..., features); w (in, features); b (features,).
    Leading axes (batch, time, ...) are all treated as examples.

    Backward, with X = x flattened to (m, in) and dY = dy flattened to (m, features):
        dC/dw = Xᵀ · dY        dC/db = Σ_m dY        dC/dx = dy · wᵀ
    """
    (features,) = positive_ints("Dense", "features", features, 1)

    def init(key, input_shape):
        shape = check_shape("Dense", input_shape, min_ndim=1)
        k_w, k_b = jax.random.split(key)
        w = w_init(k_w, (shape[-1], features), dtype)
        b = b_init(k_b, (features,), dtype)
        return (*shape[:-1], features), DenseParams(w, b)

    def forward(params, x):
        check_input("Dense", x, trailing=(params.w.shape[0],), dtype=params.w.dtype)
        b = params.b.reshape((1,) * (x.ndim - 1) + (-1,))  # explicit broadcast over examples
        return x @ params.w + b, x  # keep x for dC/dw

    def backward(params, x, dy):
        n_in, n_out = params.w.shape
        xs, dys = x.reshape(-1, n_in), dy.reshape(-1, n_out)
        dw = xs.T @ dys
        db = dys.sum(axis=0)
        dx = dy @ params.w.T
        return DenseParams(dw, db), dx

    def apply(params, x):
        return forward(params, x)[0]

    return make_layer("Dense", init, forward, backward, apply)
