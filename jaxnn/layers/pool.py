"""Average and max pooling over the spatial axes of NHWC input (no trainable weights)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnn.core import Layer, check_input, check_shape, make_layer, positive_ints, shape_token, token_shape
from jaxnn.layers._window import check_padding, output_spatial, pad_pairs, transpose_pads


def _pool_geometry(name, window, strides, padding):
    def geometry(spatial):
        pads = pad_pairs(padding, spatial, window, strides)
        return pads, output_spatial(name, spatial, window, strides, pads)

    def tiles(spatial):
        # Non-overlapping windows that tile the input exactly: pool with a reshape, whose
        # compiled form is much cheaper on CPU than reduce_window and its scatter backward.
        return (padding == "VALID" and strides == window
                and spatial[0] % window[0] == 0 and spatial[1] % window[1] == 0)

    def init(key, input_shape):
        n, h, w, c = check_shape(name, input_shape, ndim=4)
        _, (ho, wo) = geometry((h, w))
        return (n, ho, wo, c), ()

    return geometry, tiles, init


def _identity(value, x):
    """The reduction's identity as a concrete NumPy scalar: JAX recognises it as the monoid
    of a max/sum window reduction (which it can differentiate) only when it is concrete."""
    return np.array(value, x.dtype)


def _blocks(x, window):
    """(N, H, W, C) -> (N, H/kh, kh, W/kw, kw, C)."""
    n, h, w, c = x.shape
    return x.reshape(n, h // window[0], window[0], w // window[1], window[1], c)


def _spread(d, pads_t, strides):
    """Dilate d by the strides and pad it: the transpose of a strided window read."""
    cfg = ((0, 0, 0), (*pads_t[0], strides[0] - 1), (*pads_t[1], strides[1] - 1), (0, 0, 0))
    return lax.pad(d, jnp.zeros((), d.dtype), cfg)


def AvgPool(window: int | tuple[int, int], strides: int | tuple[int, int] | None = None,
            padding: Any = "VALID") -> Layer:
    """Mean over each kh×kw window: y[n,i,j,c] = (1/(kh·kw)) Σ_{a,b} xpad[n, i·sh+a, j·sw+b, c].

    Shapes: (N, H, W, C) -> (N, H_out, W_out, C); strides default to the window.
    With padding, the padded zeros count towards the mean (divisor is always kh·kw).

    Backward: every input in a window receives dy/(kh·kw) from each window containing it:
        dC/dx = sum-pool_{kh×kw, stride 1}(dy dilated by the strides, padded) / (kh·kw)
    """
    name = "AvgPool"
    window = positive_ints(name, "window", window, 2)
    strides = window if strides is None else positive_ints(name, "strides", strides, 2)
    padding = check_padding(name, padding)
    geometry, tiles, init = _pool_geometry(name, window, strides, padding)
    area = window[0] * window[1]

    def forward(params, x):
        check_input(name, x, ndim=4)
        if tiles(x.shape[1:3]):
            return _blocks(x, window).mean(axis=(2, 4)), shape_token(x.shape)
        pads, _ = geometry(x.shape[1:3])
        total = lax.reduce_window(x, _identity(0, x), lax.add, (1, *window, 1),
                                  (1, *strides, 1), ((0, 0), *pads, (0, 0)))
        return total / area, shape_token(x.shape)

    def backward(params, x_shape, dy):
        x_shape = token_shape(x_shape)
        n, h, w, c = x_shape
        if tiles((h, w)):
            d = jnp.broadcast_to((dy / area)[:, :, None, :, None, :], _blocks_shape(x_shape, window))
            return (), d.reshape(x_shape)
        pads, out = geometry((h, w))
        spread = _spread(dy / area, transpose_pads((h, w), window, strides, pads, out), strides)
        dx = lax.reduce_window(spread, _identity(0, dy), lax.add, (1, *window, 1),
                               (1, 1, 1, 1), "VALID")
        return (), dx

    return make_layer(name, init, forward, backward)


def _blocks_shape(x_shape, window):
    n, h, w, c = x_shape
    return (n, h // window[0], window[0], w // window[1], window[1], c)


def MaxPool(window: int | tuple[int, int], strides: int | tuple[int, int] | None = None,
            padding: Any = "VALID") -> Layer:
    """Max over each kh×kw window: y[n,i,j,c] = max_{a,b} xpad[n, i·sh+a, j·sw+b, c].

    Shapes: (N, H, W, C) -> (N, H_out, W_out, C); strides default to the window; padding
    is with -inf.

    Backward: dy goes to the entry that attained the max,
        dC/dx[p] = Σ_{windows W ∋ p} dy[W] · [x[p] = y[W]] / #{q ∈ W : x[q] = y[W]},
    split equally when several entries tie (as `jnp.max`'s derivative does). Autodiff of
    overlapping pools (`reduce_window`) gives the whole of dy to one of the tied entries
    instead; both are valid subgradients and agree wherever the max is unique.
    """
    name = "MaxPool"
    window = positive_ints(name, "window", window, 2)
    strides = window if strides is None else positive_ints(name, "strides", strides, 2)
    padding = check_padding(name, padding)
    geometry, tiles, init = _pool_geometry(name, window, strides, padding)

    def forward(params, x):
        check_input(name, x, ndim=4)
        if tiles(x.shape[1:3]):
            y = _blocks(x, window).max(axis=(2, 4))
        else:
            pads, _ = geometry(x.shape[1:3])
            y = lax.reduce_window(x, _identity(-np.inf, x), lax.max, (1, *window, 1),
                                  (1, *strides, 1), ((0, 0), *pads, (0, 0)))
        return y, (x, y)

    def backward(params, residuals, dy):
        x, y = residuals
        if tiles(x.shape[1:3]):
            hit = _blocks(x, window) == y[:, :, None, :, None, :]
            share = dy / hit.sum(axis=(2, 4)).astype(dy.dtype)
            dx = jnp.where(hit, share[:, :, None, :, None, :], jnp.zeros((), dy.dtype))
            return (), dx.reshape(x.shape)
        (h, w) = x.shape[1:3]
        pads, (ho, wo) = geometry((h, w))
        xpad = lax.pad(x, jnp.array(-jnp.inf, x.dtype), ((0, 0, 0), (*pads[0], 0), (*pads[1], 0), (0, 0, 0)))
        hp, wp = xpad.shape[1:3]
        offsets = [(a, b) for a in range(window[0]) for b in range(window[1])]
        hits = [lax.slice(xpad, (0, a, b, 0), (x.shape[0], a + (ho - 1) * strides[0] + 1,
                          b + (wo - 1) * strides[1] + 1, x.shape[3]), (1, *strides, 1)) == y
                for a, b in offsets]
        share = dy / sum(hit.astype(dy.dtype) for hit in hits)
        dxpad = jnp.zeros_like(xpad)
        for (a, b), hit in zip(offsets, hits):
            part = jnp.where(hit, share, jnp.zeros((), dy.dtype))
            dxpad = dxpad + _spread(part, ((a, hp - a - (ho - 1) * strides[0] - 1),
                                           (b, wp - b - (wo - 1) * strides[1] - 1)), strides)
        dx = dxpad[:, pads[0][0]:pads[0][0] + h, pads[1][0]:pads[1][0] + w, :]
        return (), dx

    return make_layer(name, init, forward, backward)
