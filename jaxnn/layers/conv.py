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
COLUMNS_BYTES = 32 * 2**20  # the largest columns (N, H_out, W_out, kh, kw, C) for the manual dx


def by_argument(evaluate, forms):
    """f(a, b) = evaluate(a, b), whose derivative in argument i is `jax.jvp` of forms[i] in
    that argument alone (the total derivative is their sum: a JVP is linear in the tangents).
    Every form must compute the same function as `evaluate`; no derivative is written here."""
    @jax.custom_jvp
    def f(a, b):
        return evaluate(a, b)

    @partial(f.defjvp, symbolic_zeros=True)
    def f_jvp(primals, tangents):
        total = None
        for i, t in enumerate(tangents):
            if isinstance(t, SymbolicZero):
                continue

            def along(v, i=i):
                args = list(primals)
                args[i] = v
                return forms[i](*args)

            _, d = jax.jvp(along, (primals[i],), (t,))
            total = d if total is None else total + d
        y = evaluate(*primals)
        return y, jnp.zeros_like(y) if total is None else total

    return f


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
    With stride 1 and columns that fit (`columns_fit`), the hand-written dC/dx is instead
    the transpose of reading the columns, dC/dx = crop(Σ_{a,b} shift_{a,b}(dy · w[a,b]ᵀ)),
    a matrix product (N·H_out·W_out, features) × (features, kh·kw·C) and a sum of shifted
    copies (≈ 2× faster than XLA:CPU's transposed convolution at LeNet-5's C3).

    With one input channel and stride 1 (a grey-scale image entering the first layer) the
    input is unfolded into its kh·kw shifted windows P[k] = xpad[:, a:a+H_out, b:b+W_out, 0],
    k = a·kw + b, stacked as (kh·kw, N, H_out, W_out), and the correlation is one matrix
    product per output channel, y[..., o] = Σ_k w[k, o] P[k], which XLA:CPU runs faster than
    its convolution with a single input channel (see benchmarks/README.md). `forward`, for
    the hand-written chain rule, stacks the windows; its backward is:
        dC/dw[k, o] = Σ_{n,i,j} P[k, n, i, j] · dy[n, i, j, o]
        dC/dx       = crop(Σ_k shift_k(dP[k])),   dP[k] = Σ_o w[k, o] · dy[..., o]
    `apply` computes the value without storing the windows, as Σ_k w[k, :] · (x shifted by
    (a, b)) (1.8× faster evaluation of LeNet-5), and JAX differentiates it in w as the `lax`
    convolution and in x as the stacked windows (a `custom_jvp` whose rule is `jax.jvp` of
    those forms: no derivative written by hand; see `correlate`).
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

    def lax_form(w, x, pads):
        return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_DN)

    def columns_fit(x, out):
        """Stride 1 and (N, H_out, W_out, kh, kw, C) columns of at most COLUMNS_BYTES: then the
        hand-written input gradient is one matrix product and a sum of shifted copies, which
        XLA:CPU runs ≈ 2× faster than its transposed convolution at LeNet-5's C3 (batch 32 to
        512); with ≈ 60 MiB of columns (batch 1000) it is 1.3× slower."""
        size = x.shape[0] * out[0] * out[1] * window[0] * window[1] * x.shape[3] * x.dtype.itemsize
        return strides == (1, 1) and size <= COLUMNS_BYTES

    def fold(part, spatial, pads, out):
        """Σ_{a,b} part(a, b) placed at offset (a, b) of the padded input, cropped to the input:
        the transpose of reading the windows xpad[:, a:a+H_out, b:b+W_out] (part: (N, H_out,
        W_out, ...), the result (N, H, W, ...))."""
        hp, wp = spatial[0] + sum(pads[0]), spatial[1] + sum(pads[1])
        total = None
        for a in range(window[0]):
            for b in range(window[1]):
                p = part(a, b)
                p = jnp.pad(p, ((0, 0), (a, hp - a - out[0]), (b, wp - b - out[1]))
                            + ((0, 0),) * (p.ndim - 3))
                total = p if total is None else total + p
        return total[:, pads[0][0]:pads[0][0] + spatial[0], pads[1][0]:pads[1][0] + spatial[1]]

    def correlate(taps, x, pads, out):
        """The one-input-channel correlation as JAX sees it in `apply`: evaluated as `shifted`
        (2–9× faster than `stacked` alone, LeNet-5's C1 at batch 128 to 1000), differentiated
        (by JAX, `jax.jvp`, forward or reverse mode) in the taps as the `lax` convolution, whose
        transpose is a convolution of x with dy (no windows stored: a LeNet-5 training step
        7–12 % faster than through the windows' matrix product, and no cache cliff at large
        batches), in x as `stacked`. Three formulations of one function."""
        forms = (lambda t, v: lax_form(t.reshape(*window, 1, features), v, pads),
                 lambda t, v: stacked(t, v, pads, out))
        return by_argument(lambda t, v: shifted(t, v, pads, out), forms)(taps, x)

    def run(params, x, differentiable):
        """(y, x): the layer's output. One input channel: `apply` (differentiable=True) runs
        `correlate`, the hand-written `forward` the stacked windows; otherwise both the `lax`
        convolution."""
        check_input(name, x, ndim=4, trailing=(params.w.shape[2],), dtype=params.w.dtype)
        if params.w.shape[:2] != window:
            fail(name, f"expected a kernel of spatial size {window}, got w of shape {params.w.shape}")
        pads, out = geometry(x.shape[1:3])
        if not unfolded(params):
            y = lax_form(params.w, x, pads)
        else:
            y = (correlate if differentiable else stacked)(params.w.reshape(-1, features), x, pads, out)
        return y + params.b.reshape(1, 1, 1, -1), x

    def forward(params, x):
        # The hand-written chain rule stacks the windows: its backward reuses them.
        return run(params, x, False)

    def backward(params, x, dy):
        spatial = x.shape[1:3]
        pads, out = geometry(spatial)
        db = dy.sum(axis=(0, 1, 2))
        if unfolded(params):
            taps = params.w.reshape(-1, features)
            dw = jnp.einsum("knhw,nhwo->ko", windows(x, pads, out), dy)
            dwin = jnp.einsum("ko,nhwo->knhw", taps, dy)
            dx = fold(lambda a, b: dwin[a * window[1] + b], spatial, pads, out)[..., None]
            return ConvParams(dw.reshape(params.w.shape), db), dx
        # dw: batch and channel swap roles, so x is read as "CHWN" and dy as "IHWO"; the
        # stride of the forward pass becomes a dilation of dy. The high pad crops input
        # rows that no output window reached.
        dw_pads = tuple((p[0], (o - 1) * s + k - n - p[0])
                        for n, k, s, p, o in zip(spatial, window, strides, pads, out))
        dw = lax.conv_general_dilated(
            x, dy, (1, 1), dw_pads, rhs_dilation=strides,
            dimension_numbers=("CHWN", "IHWO", "HWNC"))
        if columns_fit(x, out):
            # dC/dx = Σ_{a,b} shift_{a,b}(dy · w[a, b]ᵀ): the columns' transpose.
            dcols = jnp.einsum("nhwo,abco->nhwabc", dy, params.w)
            return ConvParams(dw, db), fold(lambda a, b: dcols[:, :, :, a, b], spatial, pads, out)
        w_flip = params.w[::-1, ::-1]  # read as HWOI: forward's outputs are now inputs
        dx = lax.conv_general_dilated(
            dy, w_flip, (1, 1), transpose_pads(spatial, window, strides, pads, out),
            lhs_dilation=strides, dimension_numbers=("NHWC", "HWOI", "NHWC"))
        return ConvParams(dw, db), dx

    def apply(params, x):
        # What evaluation and JAX's derivatives see: `correlate`.
        return run(params, x, True)[0]

    return make_layer(name, init, forward, backward, apply)
