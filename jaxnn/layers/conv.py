"""2-D convolution, NHWC input, HWIO kernel: one forward (`lax.conv_general_dilated`) and its
hand-written backward. A faster form for XLA:CPU with the same params is `conv_cpu.CPUConv2D`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxnn import initializers
from jaxnn.core import Layer, check_input, check_shape, fail, make_layer, positive_ints
from jaxnn.layers._window import Pads, check_padding, output_spatial, pad_pairs, transpose_pads

DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


class ConvParams(NamedTuple):
    w: jax.Array  # (kh, kw, in, out)
    b: jax.Array  # (out,)


Geometry = Callable[[tuple[int, ...]], tuple[Pads, tuple[int, ...]]]


def conv_geometry(name: str, features: Any, kernel_size: Any, strides: Any, padding: Any
                  ) -> tuple[int, tuple[int, int], tuple[int, int], Any, Geometry]:
    """Validated (features, window, strides, padding) and geometry(spatial) -> (pads, (H_out,
    W_out)): the arguments every 2-D convolution constructor shares."""
    (features,) = positive_ints(name, "features", features, 1)
    window = positive_ints(name, "kernel_size", kernel_size, 2)
    strides = positive_ints(name, "strides", strides, 2)
    padding = check_padding(name, padding)

    def geometry(spatial: tuple[int, ...]) -> tuple[Pads, tuple[int, ...]]:
        pads = pad_pairs(padding, spatial, window, strides)
        return pads, output_spatial(name, spatial, window, strides, pads)

    return features, window, strides, padding, geometry


def conv_init(name, features, window, geometry, w_init, b_init, dtype):
    """init(key, (N, H, W, C)) -> ((N, H_out, W_out, features), ConvParams)."""
    def init(key, input_shape):
        n, h, w, c = check_shape(name, input_shape, ndim=4)
        _, (ho, wo) = geometry((h, w))
        k_w, k_b = jax.random.split(key)
        params = ConvParams(w_init(k_w, (*window, c, features), dtype),
                            b_init(k_b, (features,), dtype))
        return (n, ho, wo, features), params
    return init


def check_conv_input(name, window, params, x) -> None:
    check_input(name, x, ndim=4, trailing=(params.w.shape[2],), dtype=params.w.dtype)
    if params.w.shape[:2] != window:
        fail(name, f"expected a kernel of spatial size {window}, got w of shape {params.w.shape}")


def conv_weight_gradient(x, dy, window, strides, pads, out):
    """dC/dw[a,b,c,o] = Σ_{n,i,j} xpad[n, i·sh+a, j·sw+b, c] · dy[n,i,j,o]: x correlated with dy
    dilated by the stride, batch and channels swapping roles (x read as CHWN, dy as IHWO). The
    high pad crops input rows that no output window reached."""
    spatial = x.shape[1:3]
    dw_pads = tuple((p[0], (o - 1) * s + k - n - p[0])
                    for n, k, s, p, o in zip(spatial, window, strides, pads, out))
    return lax.conv_general_dilated(x, dy, (1, 1), dw_pads, rhs_dilation=strides,
                                    dimension_numbers=("CHWN", "IHWO", "HWNC"))


def conv_input_gradient(w, dy, spatial, window, strides, pads, out):
    """dC/dx = (dy dilated by the stride, padded) ⋆ (w flipped in space, read as HWOI)."""
    return lax.conv_general_dilated(
        dy, w[::-1, ::-1], (1, 1), transpose_pads(spatial, window, strides, pads, out),
        lhs_dilation=strides, dimension_numbers=("NHWC", "HWOI", "NHWC"))


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

    Shapes: x (N, H, W, C) -> y (N, H_out, W_out, features); w (kh, kw, C, features) (HWIO);
    b (features,). padding: "SAME" (H_out = ceil(H/sh)), "VALID" (no padding), an int, or
    explicit ((lo_h, hi_h), (lo_w, hi_w)); xpad is x padded with zeros by (lo, hi) and

        H_out = (H + lo_h + hi_h - kh) // sh + 1        (W_out likewise)

    Backward (residual: x), two more correlations and a sum:
        dC/dw[a,b,c,o] = Σ_{n,i,j} xpad[n, i·sh+a, j·sw+b, c] · dy[n,i,j,o]
                         (x correlated with dy dilated by the stride)
        dC/dx          = (dy dilated by the stride, padded) ⋆ (w flipped in space, in/out swapped)
                         padded by (kh-1-lo_h) before and (H + lo_h - 1 - (H_out-1)·sh) after
                         (a negative pad crops rows that no window reached)
        dC/db[o]       = Σ_{n,i,j} dy[n,i,j,o]
    """
    name = "Conv2D"
    features, window, strides, padding, geometry = conv_geometry(
        name, features, kernel_size, strides, padding)

    def forward(params, x):
        check_conv_input(name, window, params, x)
        pads, _ = geometry(x.shape[1:3])
        y = lax.conv_general_dilated(x, params.w, strides, pads,
                                     dimension_numbers=DIMENSION_NUMBERS)
        return y + params.b.reshape(1, 1, 1, -1), x

    def backward(params, x, dy):
        spatial = x.shape[1:3]
        pads, out = geometry(spatial)
        dw = conv_weight_gradient(x, dy, window, strides, pads, out)
        dx = conv_input_gradient(params.w, dy, spatial, window, strides, pads, out)
        return ConvParams(dw, dy.sum(axis=(0, 1, 2))), dx

    return make_layer(name, conv_init(name, features, window, geometry, w_init, b_init, dtype),
                      forward, backward)


__all__ = ["Conv2D", "ConvParams", "conv_geometry", "conv_init", "conv_input_gradient",
           "conv_weight_gradient"]
