"""The layers of the 1998 LeNet-5 that the stock layers do not cover.

LeCun, Bottou, Bengio & Haffner (1998), "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), section II.B and Appendix A:
    ScaledTanh     the squashing function f(a) = A·tanh(S·a), A = 1.7159, S = 2/3
    Subsample      S2/S4: a 2×2 window sum times a trainable coefficient, plus a bias, per map
    PartialConv2D  C3: a convolution whose output maps see only some input maps (Table I)
    RBF            the output layer: squared Euclidean distance to a fixed code per class
    Negate         y = -x, turning RBF penalties into scores for softmax cross-entropy
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import initializers
from jaxnn.core import (
    Layer,
    check_input,
    check_shape,
    fail,
    make_layer,
    positive_ints,
    shape_token,
    token_shape,
)
from jaxnn.layers._checks import finite_real
from jaxnn.layers.activations import _pointwise
from jaxnn.layers.conv import Conv2D, ConvParams

# Table I of the paper: column j lists the S2 maps (rows) that C3 map j is connected to.
_C3_INPUTS = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)
# LENET5_C3_TABLE[i, j]: whether C3 map j sees S2 map i; (6, 16) bool, 60 connections.
LENET5_C3_TABLE = np.array([[i in rows for rows in _C3_INPUTS] for i in range(6)])
LENET5_C3_TABLE.flags.writeable = False


def ScaledTanh(a: float = 1.7159, s: float = 2 / 3) -> Layer:
    """y = a·tanh(s·x), elementwise; any shape.

    The paper's defaults make f(±1) = ±1 and put the largest curvature of f near ±1, the
    targets its output codes use. Backward, with t = tanh(s·x) kept as the residual:
        dx = dy · a·s·(1 - t²)
    """
    a, s = finite_real("ScaledTanh", "a", a), finite_real("ScaledTanh", "s", s)

    def forward(x):
        t = jnp.tanh(s * x)
        return a * t, t

    return _pointwise("ScaledTanh", forward, lambda t, dy: dy * (a * s) * (1 - t * t))


def Negate() -> Layer:
    """y = -x, elementwise; any shape.  Backward: dx = -dy."""
    return _pointwise("Negate", lambda x: (-x, ()), lambda r, dy: -dy)


class SubsampleParams(NamedTuple):
    coef: jax.Array  # (C,)
    bias: jax.Array  # (C,)


def Subsample(window: int | tuple[int, int] = 2, coef_init: initializers.Initializer | None = None,
              b_init: initializers.Initializer = initializers.zeros, dtype=jnp.float32) -> Layer:
    """The paper's trainable subsampling (S2, S4): per feature map c,

        y[n,i,j,c] = coef[c] · Σ_{a<kh, b<kw} x[n, i·kh + a, j·kw + b, c] + bias[c]

    Shapes: x (N, H, W, C) -> y (N, H // kh, W // kw, C); coef (C,), bias (C,).
    Windows do not overlap (stride = window) and are VALID: rows and columns past the
    last whole window are ignored (and get zero gradient).
    coef_init defaults to the constant 1/(kh·kw), so the layer starts as average pooling
    (the paper draws every weight from U(-2.4/F, 2.4/F), F the fan-in, here kh·kw); the
    bias starts at zero. Both are trained.

    Backward, with s = the window sums kept as the residual:
        dcoef[c] = Σ_{n,i,j} dy[n,i,j,c] · s[n,i,j,c]
        dbias[c] = Σ_{n,i,j} dy[n,i,j,c]
        dx[n, i·kh + a, j·kw + b, c] = coef[c] · dy[n,i,j,c]
    """
    name = "Subsample"
    window = positive_ints(name, "window", window, 2)
    kh, kw = window
    if coef_init is None:
        def coef_init(key, shape, dtype=jnp.float32):
            return jnp.full(shape, 1 / (kh * kw), dtype)

    def out_spatial(h, w):
        if h < kh or w < kw:
            fail(name, f"window {window} does not fit spatial size {(h, w)}")
        return h // kh, w // kw

    def init(key, input_shape):
        n, h, w, c = check_shape(name, input_shape, ndim=4)
        k_c, k_b = jax.random.split(key)
        params = SubsampleParams(coef_init(k_c, (c,), dtype), b_init(k_b, (c,), dtype))
        return (n, *out_spatial(h, w), c), params

    def forward(params, x):
        check_input(name, x, ndim=4, trailing=(params.coef.shape[0],), dtype=params.coef.dtype)
        n, h, w, c = x.shape
        ho, wo = out_spatial(h, w)
        blocks = x[:, :ho * kh, :wo * kw].reshape(n, ho, kh, wo, kw, c)
        sums = blocks.sum(axis=(2, 4))
        y = sums * params.coef.reshape(1, 1, 1, -1) + params.bias.reshape(1, 1, 1, -1)
        return y, (sums, shape_token(x.shape))

    def backward(params, residuals, dy):
        sums, x_shape = residuals
        n, h, w, c = token_shape(x_shape)
        ho, wo = sums.shape[1:3]
        dparams = SubsampleParams((dy * sums).sum(axis=(0, 1, 2)), dy.sum(axis=(0, 1, 2)))
        dsums = dy * params.coef.reshape(1, 1, 1, -1)
        dblocks = jnp.broadcast_to(dsums[:, :, None, :, None, :], (n, ho, kh, wo, kw, c))
        dx = jnp.pad(dblocks.reshape(n, ho * kh, wo * kw, c),
                     ((0, 0), (0, h - ho * kh), (0, w - wo * kw), (0, 0)))
        return dparams, dx

    return make_layer(name, init, forward, backward)


def PartialConv2D(features: int, kernel_size: int | tuple[int, int], table: Any,
                  strides: int | tuple[int, int] = 1, padding: Any = "VALID",
                  w_init: initializers.Initializer = initializers.lecun_normal,
                  b_init: initializers.Initializer = initializers.zeros,
                  dtype=jnp.float32) -> Layer:
    """`Conv2D` in which output map o sees input map c only where table[c, o] is true.

        y = conv(x, w ⊙ M) + b,     M[a, b, c, o] = table[c, o]   (M has the kernel's shape)

    Shapes as `Conv2D`: x (N, H, W, C) -> y (N, H_out, W_out, features),
    w (kh, kw, C, features), b (features,); table: (C, features) of bools or 0/1, fixed.
    The paper's C3 is PartialConv2D(16, 5, LENET5_C3_TABLE) on S2's 14×14×6 maps.
    The kernel is stored whole (HWIO, like Conv2D's), its masked-out taps are zero from
    init on and receive zero gradient, so they stay zero under any gradient step (and
    under decoupled weight decay). w_init sees the whole kernel, so its fan-in is kh·kw·C
    even for maps connected to fewer inputs.

    Backward: Conv2D's hand-written rules applied with the effective kernel w ⊙ M,
        dC/dw = M ⊙ dC/dw_eff,     dC/db, dC/dx as Conv2D's with w_eff = w ⊙ M.
    """
    name = "PartialConv2D"
    (features,) = positive_ints(name, "features", features, 1)
    window = positive_ints(name, "kernel_size", kernel_size, 2)
    mask = np.asarray(table)
    if mask.ndim != 2 or mask.shape[1] != features:
        fail(name, f"table must have shape (in, features={features}), got {mask.shape}")
    if mask.dtype != bool and not np.isin(mask, (0, 1)).all():
        fail(name, "table must hold bools or 0/1 values")
    mask = mask.astype(bool)
    conv = Conv2D(features, window, strides, padding, w_init, b_init, dtype)

    def masked(params):
        m = jnp.asarray(mask, params.w.dtype)[None, None]
        return ConvParams(params.w * m, params.b), m

    def init(key, input_shape):
        shape = check_shape(name, input_shape, ndim=4)
        if shape[-1] != mask.shape[0]:
            fail(name, f"table has {mask.shape[0]} input maps, got input shape {shape}")
        out_shape, params, _ = conv.init(key, shape)
        return out_shape, masked(params)[0]

    def forward(params, x):
        check_input(name, x, ndim=4, trailing=(mask.shape[0],))
        if params.w.shape != (*window, *mask.shape):
            fail(name, f"expected a kernel of shape {(*window, *mask.shape)}, got {params.w.shape}")
        y, residuals, _ = conv.forward(masked(params)[0], (), x, train=False)
        return y, residuals

    def backward(params, residuals, dy):
        eff, m = masked(params)
        dparams, dx = conv.backward(eff, residuals, dy)
        return ConvParams(dparams.w * m, dparams.b), dx

    return make_layer(name, init, forward, backward)


def _pm1_codes(num_classes: int, features: int, seed: int) -> np.ndarray:
    """(num_classes, features) of ±1, drawn from numpy's PCG64 seeded with `seed`."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((num_classes, features)) < 0.5, -1.0, 1.0)


def RBF(num_classes: int, centers: Any = None, *, seed: int = 0) -> Layer:
    """Euclidean radial basis function units, the paper's output layer (eq. 7):

        y[n, k] = Σ_i (x[n, i] - c[k, i])²

    Shapes: x (N, D) -> y (N, num_classes); centers c (num_classes, D), fixed (params
    `()`, not trained). y is a penalty: the lower, the more likely class k.
    The paper's centers are stylised 7×12 bitmaps of the characters (D = 84) in ±1; those
    bitmaps are not published as data, so with centers=None each class gets a ±1 code
    drawn by numpy's default_rng(seed) (random ±1 codes in 84 dimensions are nearly
    orthogonal). Follow RBF with `Negate` to get scores for softmax cross-entropy.

    Backward, with x kept as the residual:
        dx[n, i] = 2 Σ_k dy[n, k] (x[n, i] - c[k, i]) = 2 (x[n, i] Σ_k dy[n, k] - (dy c)[n, i])
    """
    name = "RBF"
    (num_classes,) = positive_ints(name, "num_classes", num_classes, 1)
    fixed = None if centers is None else np.asarray(centers, np.float64)
    if fixed is not None and (fixed.ndim != 2 or fixed.shape[0] != num_classes):
        fail(name, f"centers must have shape (num_classes={num_classes}, D), got {fixed.shape}")
    if fixed is not None and not np.isfinite(fixed).all():
        fail(name, "centers must be finite, got NaN or infinite entries")

    def codes(features):
        if fixed is None:
            return _pm1_codes(num_classes, features, seed)
        if features != fixed.shape[1]:
            fail(name, f"centers have {fixed.shape[1]} features, got inputs with {features}")
        return fixed

    def init(key, input_shape):
        n, d = check_shape(name, input_shape, ndim=2)
        codes(d)
        return (n, num_classes), ()

    def forward(params, x):
        check_input(name, x, ndim=2)
        c = jnp.asarray(codes(x.shape[1]), x.dtype)
        diff = x[:, None, :] - c[None]
        return (diff * diff).sum(axis=-1), x

    def backward(params, x, dy):
        c = jnp.asarray(codes(x.shape[1]), x.dtype)
        return (), 2 * (x * dy.sum(axis=1, keepdims=True) - dy @ c)

    return make_layer(name, init, forward, backward)


__all__ = ["LENET5_C3_TABLE", "Negate", "PartialConv2D", "RBF", "ScaledTanh", "Subsample",
           "SubsampleParams"]
