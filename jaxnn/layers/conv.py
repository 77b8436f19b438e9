"""2-D convolution, NHWC input, HWIO kernel."""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

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

    With one input channel and stride 1 (a grey-scale image entering the first layer) the
    input is unfolded into its kh·kw shifted windows P[k] = xpad[:, a:a+H_out, b:b+W_out, 0],
    k = a·kw + b, stacked as (kh·kw, N, H_out, W_out), and the correlation is one matrix
    product per output channel, y[..., o] = Σ_k w[k, o] P[k], which XLA:CPU runs faster than
    its convolution with a single input channel (see benchmarks/README.md). The forward value
    in `apply` is computed without storing the windows, as Σ_k w[k, :] · (x shifted by (a, b)),
    1.8× faster evaluation of LeNet-5; JAX differentiates the windowed form (a `custom_jvp`
    whose rule is `jax.jvp` of it: no derivative written by hand). `forward`, for the
    hand-written chain rule, stacks the windows; its backward is:
        dC/dw[k, o] = Σ_{n,i,j} P[k, n, i, j] · dy[n, i, j, o]
        dC/dx       = crop(Σ_k shift_k(dP[k])),   dP[k] = Σ_o w[k, o] · dy[..., o]
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

    def unfolded(params):
        return params.w.shape[2] == 1 and strides == (1, 1)

    def windows(x, pads, out):
        """(kh·kw, N, H_out, W_out): xpad[:, a:a+H_out, b:b+W_out, 0] for k = a·kw + b."""
        xpad = jnp.pad(x[..., 0], ((0, 0), *pads))
        return jnp.stack([xpad[:, a:a + out[0], b:b + out[1]]
                          for a in range(window[0]) for b in range(window[1])])

    def stacked(taps, x, pads, out):
        """Σ_k taps[k, o] P[k] over the stacked windows, output channels first (each a
        (kh·kw)-long contraction), then NHWC."""
        return jnp.einsum("ko,knhw->onhw", taps, windows(x, pads, out)).transpose(1, 2, 3, 0)

    def shifted(taps, x, pads, out):
        """Σ_k taps[k, o] · xpad[:, a:a+H_out, b:b+W_out]: one fused loop, no windows stored;
        output channels first then NHWC, as `stacked` (the transposed layout is the one XLA:CPU
        keeps for the layers after it: NHWC with the channels innermost makes a following
        max-pool ~9× slower)."""
        xpad = jnp.pad(x[..., 0], ((0, 0), *pads))[None]
        y = None
        for k, (a, b) in enumerate((a, b) for a in range(window[0]) for b in range(window[1])):
            term = xpad[:, :, a:a + out[0], b:b + out[1]] * taps[k].reshape(-1, 1, 1, 1)
            y = term if y is None else y + term
        return y.transpose(1, 2, 3, 0)

    def correlate(taps, x, pads, out):
        """The one-input-channel correlation: evaluated as `shifted`, differentiated (by JAX,
        forward or reverse mode) as `stacked`. Same function, two formulations: XLA:CPU runs
        `shifted` 2–9× faster alone (LeNet-5's conv1, batch 128 to 1000), but the transpose of
        a shifted-slice form materialises 25 broadcast slices (a 2.5× slower training step),
        while `stacked`'s derivative is two matrix products."""
        @jax.custom_jvp
        def f(taps, x):
            return shifted(taps, x, pads, out)

        @partial(f.defjvp, symbolic_zeros=True)
        def f_jvp(primals, tangents):
            live = [i for i, t in enumerate(tangents) if not isinstance(t, SymbolicZero)]

            def g(*args):
                full = list(primals)
                for i, a in zip(live, args):
                    full[i] = a
                return stacked(*full, pads, out)

            return jax.jvp(g, [primals[i] for i in live], [tangents[i] for i in live])

        return f(taps, x)

    def run(params, x, evaluate):
        """(y, x): the layer's output, one-channel correlations computed by `evaluate`."""
        check_input(name, x, ndim=4, trailing=(params.w.shape[2],), dtype=params.w.dtype)
        if params.w.shape[:2] != window:
            fail(name, f"expected a kernel of spatial size {window}, got w of shape {params.w.shape}")
        pads, out = geometry(x.shape[1:3])
        if unfolded(params):
            y = evaluate(params.w.reshape(-1, features), x, pads, out)
        else:
            y = lax.conv_general_dilated(x, params.w, strides, pads, dimension_numbers=_DN)
        return y + params.b.reshape(1, 1, 1, -1), x

    def forward(params, x):
        # The hand-written chain rule stacks the windows: its backward reuses them.
        return run(params, x, stacked)

    def backward(params, x, dy):
        spatial = x.shape[1:3]
        pads, out = geometry(spatial)
        db = dy.sum(axis=(0, 1, 2))
        if unfolded(params):
            taps = params.w.reshape(-1, features)
            dw = jnp.einsum("knhw,nhwo->ko", windows(x, pads, out), dy)
            dwin = jnp.einsum("ko,nhwo->knhw", taps, dy)
            hp, wp = spatial[0] + sum(pads[0]), spatial[1] + sum(pads[1])
            offsets = [(a, b) for a in range(window[0]) for b in range(window[1])]
            dxpad = sum(jnp.pad(dwin[k], ((0, 0), (a, hp - a - out[0]), (b, wp - b - out[1])))
                        for k, (a, b) in enumerate(offsets))
            dx = dxpad[:, pads[0][0]:pads[0][0] + spatial[0], pads[1][0]:pads[1][0] + spatial[1], None]
            return ConvParams(dw.reshape(params.w.shape), db), dx
        # dw: batch and channel swap roles, so x is read as "CHWN" and dy as "IHWO"; the
        # stride of the forward pass becomes a dilation of dy. The high pad crops input
        # rows that no output window reached.
        dw_pads = tuple((p[0], (o - 1) * s + k - n - p[0])
                        for n, k, s, p, o in zip(spatial, window, strides, pads, out))
        dw = lax.conv_general_dilated(
            x, dy, (1, 1), dw_pads, rhs_dilation=strides,
            dimension_numbers=("CHWN", "IHWO", "HWNC"))
        w_flip = params.w[::-1, ::-1]  # read as HWOI: forward's outputs are now inputs
        dx = lax.conv_general_dilated(
            dy, w_flip, (1, 1), transpose_pads(spatial, window, strides, pads, out),
            lhs_dilation=strides, dimension_numbers=("NHWC", "HWOI", "NHWC"))
        return ConvParams(dw, db), dx

    def apply(params, x):
        # What evaluation and JAX's derivatives see: `correlate`.
        return run(params, x, correlate)[0]

    return make_layer(name, init, forward, backward, apply)
