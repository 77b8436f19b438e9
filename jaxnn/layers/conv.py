"""2-D convolution, NHWC input, HWIO kernel."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxnn import initializers
from jaxnn.core import Layer, check_input, check_shape, fail, make_layer, positive_ints
from jaxnn.layers._window import check_padding, output_spatial, pad_pairs, transpose_pads

_DN = ("NHWC", "HWIO", "NHWC")


class ConvParams(NamedTuple):
    w: jax.Array  # (kh, kw, in, out)
    b: jax.Array  # (out,)


def Conv2D(
    features: int,
    kernel_size: int | tuple[int, int],
    strides: int | tuple[int, int] = 1,
    padding: Any = "VALID",
    w_init: initializers.Initializer = initializers.lecun_normal,
    b_init: initializers.Initializer = initializers.zeros,
    dtype=jnp.float32,
) -> Layer:
    """2-D cross-correlation (what deep learning calls convolution) plus a bias.

        y[n,i,j,o] = Σ_{a,b,c} xpad[n, i·sh + a, j·sw + b, c] · w[a,b,c,o] + b[o]

    Shapes: x (N, H, W, C) -> y (N, H_out, W_out, features), w (kh, kw, C, features).
    padding: "SAME" (H_out = ceil(H/sh)), "VALID" (no padding), an int, or explicit
    ((lo_h, hi_h), (lo_w, hi_w)). H_out = (H + lo_h + hi_h - kh) // sh + 1.

    Backward, written as two more correlations:
        dC/dw[a,b,c,o] = Σ_{n,i,j} xpad[n, i·sh+a, j·sw+b, c] · dy[n,i,j,o]
                         (x correlated with dy dilated by the stride)
        dC/dx          = (dy dilated by the stride, padded) ⋆ (w flipped in space, in/out swapped)
        dC/db[o]       = Σ_{n,i,j} dy[n,i,j,o]
    """
    name = "Conv2D"
    (features,) = positive_ints(name, "features", features, 1)
    window = positive_ints(name, "kernel_size", kernel_size, 2)
    strides = positive_ints(name, "strides", strides, 2)
    padding = check_padding(name, padding)

    def geometry(spatial):
        pads = pad_pairs(padding, spatial, window, strides)
        return pads, output_spatial(name, spatial, window, strides, pads)

    def init(key, input_shape):
        n, h, w, c = check_shape(name, input_shape, ndim=4)
        _, (ho, wo) = geometry((h, w))
        k_w, k_b = jax.random.split(key)
        params = ConvParams(w_init(k_w, (*window, c, features), dtype), b_init(k_b, (features,), dtype))
        return (n, ho, wo, features), params

    def forward(params, x):
        check_input(name, x, ndim=4, trailing=(params.w.shape[2],))
        if params.w.shape[:2] != window:
            fail(name, f"expected a kernel of spatial size {window}, got w of shape {params.w.shape}")
        pads, _ = geometry(x.shape[1:3])
        y = lax.conv_general_dilated(x, params.w, strides, pads, dimension_numbers=_DN)
        return y + params.b.reshape(1, 1, 1, -1), x

    def backward(params, x, dy):
        spatial = x.shape[1:3]
        pads, out = geometry(spatial)
        # dw: batch and channel swap roles, so x is read as "CHWN" and dy as "IHWO"; the
        # stride of the forward pass becomes a dilation of dy. The high pad crops input
        # rows that no output window reached.
        dw_pads = tuple((p[0], (o - 1) * s + k - n - p[0])
                        for n, k, s, p, o in zip(spatial, window, strides, pads, out))
        dw = lax.conv_general_dilated(
            x, dy, (1, 1), dw_pads, rhs_dilation=strides,
            dimension_numbers=("CHWN", "IHWO", "HWNC"))
        db = dy.sum(axis=(0, 1, 2))
        w_flip = params.w[::-1, ::-1]  # read as HWOI: forward's outputs are now inputs
        dx = lax.conv_general_dilated(
            dy, w_flip, (1, 1), transpose_pads(spatial, window, strides, pads, out),
            lhs_dilation=strides, dimension_numbers=("NHWC", "HWOI", "NHWC"))
        return ConvParams(dw, db), dx

    def apply(params, x):
        return forward(params, x)[0]

    return make_layer(name, init, forward, backward, apply)
