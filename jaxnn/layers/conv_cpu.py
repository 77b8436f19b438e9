"""`CPUConv2D`: `Conv2D`'s function and params, computed in forms XLA:CPU runs faster.

The same layer as `jaxnn.layers.conv.Conv2D` (same signature, same `ConvParams`, same values
and gradients up to float rounding); a model picks it explicitly, e.g.
`jaxnn.models.lenet5(conv=CPUConv2D)` on a CPU. Measurements: benchmarks/README.md.

One input channel, stride 1 (a grey-scale image entering the first layer). The input is
unfolded into its kh·kw shifted windows P[k] = xpad[:, a:a+H_out, b:b+W_out, 0], k = a·kw + b,
and the correlation is a matrix product per output channel, y[..., o] = Σ_k w[k, o] P[k] + b[o].
    forward (hand-written chain rule): the windows stacked as (kh·kw, N, H_out, W_out); backward
        dC/dw[k, o] = Σ_{n,i,j} P[k, n, i, j] · dy[n, i, j, o]
        dC/dx       = crop(Σ_k shift_k(dP[k])),   dP[k] = Σ_o w[k, o] · dy[..., o]
    apply (what JAX differentiates): the value as Σ_k w[k, :] · (x shifted by (a, b)), no windows
        stored, inside a `jax.custom_jvp` whose rule is `jax.jvp` of two other forms of the same
        function: the `lax` convolution in w and the stacked windows in x (no derivative is
        written by hand there).
Several input channels, stride 1, columns (N, H_out, W_out, kh, kw, C) of at most
COLUMNS_BYTES: the forward is the `lax` convolution, and the hand-written dC/dx is the transpose
of reading the columns,
        dC/dx = crop(Σ_{a,b} shift_{a,b}(dy · w[a, b]ᵀ)),
a matrix product and a sum of shifted copies. Otherwise (strided, or larger columns): `Conv2D`.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from jaxnn import initializers
from jaxnn.core import Layer, make_layer
from jaxnn.layers.conv import (
    DIMENSION_NUMBERS,
    ConvParams,
    check_conv_input,
    conv_geometry,
    conv_init,
    conv_input_gradient,
    conv_weight_gradient,
)

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


def CPUConv2D(
    features: int,
    kernel_size: int | tuple[int, int],
    strides: int | tuple[int, int] = 1,
    padding: Any = "VALID",
    w_init: initializers.Initializer = initializers.lecun_normal,
    b_init: initializers.Initializer = initializers.zeros,
    dtype=jnp.float32,
) -> Layer:
    """`Conv2D` (same arguments, params and function) in XLA:CPU's faster forms: the module
    docstring gives them and their backward."""
    name = "Conv2D"  # the same layer: errors read as Conv2D's
    features, window, strides, padding, geometry = conv_geometry(
        name, features, kernel_size, strides, padding)
    offsets = [(a, b) for a in range(window[0]) for b in range(window[1])]

    def one_channel(params):
        return params.w.shape[2] == 1 and strides == (1, 1)

    def windows(x, pads, out):
        """(kh·kw, N, H_out, W_out): xpad[:, a:a+H_out, b:b+W_out, 0] for k = a·kw + b."""
        xpad = jnp.pad(x[..., 0], ((0, 0), *pads))
        return jnp.stack([xpad[:, a:a + out[0], b:b + out[1]] for a, b in offsets])

    def stacked(taps, x, pads, out):
        """Σ_k taps[k, o] P[k] over the stacked windows (output channels first, then NHWC)."""
        return jnp.einsum("ko,knhw->onhw", taps, windows(x, pads, out)).transpose(1, 2, 3, 0)

    def shifted(taps, x, pads, out):
        """Σ_k taps[k, o] · xpad[:, a:a+H_out, b:b+W_out]: one fused loop, no windows stored."""
        xpad = jnp.pad(x[..., 0], ((0, 0), *pads))[None]
        y: jax.Array | None = None
        for k, (a, b) in enumerate(offsets):
            term = xpad[:, :, a:a + out[0], b:b + out[1]] * taps[k].reshape(-1, 1, 1, 1)
            y = term if y is None else y + term
        assert y is not None  # offsets is never empty: the window has positive sizes
        return y.transpose(1, 2, 3, 0)

    def lax_conv(w, x, pads):
        return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=DIMENSION_NUMBERS)

    def correlate(taps, x, pads, out):
        """The one-channel correlation JAX sees in `apply`: evaluated as `shifted`,
        differentiated in the taps as the `lax` convolution and in x as `stacked`."""
        forms = (lambda t, v: lax_conv(t.reshape(*window, 1, features), v, pads),
                 lambda t, v: stacked(t, v, pads, out))
        return by_argument(lambda t, v: shifted(t, v, pads, out), forms)(taps, x)

    def columns_fit(x, out):
        size = x.shape[0] * out[0] * out[1] * window[0] * window[1] * x.shape[3] * x.dtype.itemsize
        return strides == (1, 1) and size <= COLUMNS_BYTES

    def fold(part, spatial, pads, out):
        """Σ_{a,b} part(a, b) placed at offset (a, b) of the padded input, cropped to the input:
        the transpose of reading the windows xpad[:, a:a+H_out, b:b+W_out]."""
        hp, wp = spatial[0] + sum(pads[0]), spatial[1] + sum(pads[1])
        total: jax.Array | None = None
        for a, b in offsets:
            p = part(a, b)
            p = jnp.pad(p, ((0, 0), (a, hp - a - out[0]), (b, wp - b - out[1]))
                        + ((0, 0),) * (p.ndim - 3))
            total = p if total is None else total + p
        assert total is not None  # offsets is never empty: the window has positive sizes
        return total[:, pads[0][0]:pads[0][0] + spatial[0], pads[1][0]:pads[1][0] + spatial[1]]

    def run(params, x, one_channel_form):
        check_conv_input(name, window, params, x)
        pads, out = geometry(x.shape[1:3])
        if one_channel(params):
            y = one_channel_form(params.w.reshape(-1, features), x, pads, out)
        else:
            y = lax_conv(params.w, x, pads)
        return y + params.b.reshape(1, 1, 1, -1)

    def forward(params, x):
        return run(params, x, stacked), x

    def backward(params, x, dy):
        spatial = x.shape[1:3]
        pads, out = geometry(spatial)
        db = dy.sum(axis=(0, 1, 2))
        if one_channel(params):
            dw = jnp.einsum("knhw,nhwo->ko", windows(x, pads, out), dy)
            dwin = jnp.einsum("ko,nhwo->knhw", params.w.reshape(-1, features), dy)
            dx = fold(lambda a, b: dwin[a * window[1] + b], spatial, pads, out)[..., None]
            return ConvParams(dw.reshape(params.w.shape), db), dx
        dw = conv_weight_gradient(x, dy, window, strides, pads, out)
        if columns_fit(x, out):
            dcols = jnp.einsum("nhwo,abco->nhwabc", dy, params.w)
            dx = fold(lambda a, b: dcols[:, :, :, a, b], spatial, pads, out)
        else:
            dx = conv_input_gradient(params.w, dy, spatial, window, strides, pads, out)
        return ConvParams(dw, db), dx

    def apply(params, x):
        return run(params, x, correlate)

    return make_layer(name, conv_init(name, features, window, geometry, w_init, b_init, dtype),
                      forward, backward, apply)


__all__ = ["COLUMNS_BYTES", "CPUConv2D"]
