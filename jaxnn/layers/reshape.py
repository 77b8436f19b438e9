"""Shape-only layers: they move numbers around, and their backward moves gradients back."""

from __future__ import annotations

import math

from jaxnn.core import Layer, check_input, check_shape, fail, make_layer, shape_token, token_shape


def Flatten() -> Layer:
    """(N, d1, d2, ...) -> (N, d1·d2·...), row-major (for NHWC: H, then W, then C).

    Backward: dx = dy reshaped to the input's shape.
    """
    def init(key, input_shape):
        shape = check_shape("Flatten", input_shape, min_ndim=2)
        return (shape[0], math.prod(shape[1:])), ()

    def forward(params, x):
        check_input("Flatten", x)
        if x.ndim < 2:
            fail("Flatten", f"expected an input of rank >= 2 (batch first), got shape {x.shape}")
        return x.reshape(x.shape[0], -1), shape_token(x.shape)

    def backward(params, x_shape, dy):
        return (), dy.reshape(token_shape(x_shape))

    return make_layer("Flatten", init, forward, backward)


def Reshape(shape: tuple[int, ...]) -> Layer:
    """(N, ...) -> (N, *shape): a per-example reshape; the batch axis is kept.

    One entry of `shape` may be -1. Backward: dx = dy reshaped to the input's shape.
    """
    shape = tuple(shape)
    if not all(isinstance(d, int) and (d > 0 or d == -1) for d in shape) or shape.count(-1) > 1:
        fail("Reshape", f"shape must be positive ints with at most one -1, got {shape}")

    def target(in_shape):
        size = math.prod(in_shape[1:])
        known = math.prod(d for d in shape if d != -1)
        if (-1 in shape and size % known) or (-1 not in shape and size != known):
            fail("Reshape", f"cannot reshape examples of shape {tuple(in_shape[1:])} "
                            f"({size} values) to {shape}")
        return tuple(size // known if d == -1 else d for d in shape)

    def init(key, input_shape):
        in_shape = check_shape("Reshape", input_shape, min_ndim=2)
        return (in_shape[0], *target(in_shape)), ()

    def forward(params, x):
        check_input("Reshape", x)
        return x.reshape(x.shape[0], *target(x.shape)), shape_token(x.shape)

    def backward(params, x_shape, dy):
        return (), dy.reshape(token_shape(x_shape))

    return make_layer("Reshape", init, forward, backward)
