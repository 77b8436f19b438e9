"""Mixed precision: compute in a low-precision dtype, keep float32 master parameters.

    model16 = mixed_precision(lenet5(), jnp.bfloat16)

`model16` is an ordinary `Layer` with the same params pytree (float32) as `model`:

    apply(p, x)        = model.apply(c(p), c(x)), returned in x's dtype
    forward(p, x)      = (y, (residuals, dtype token of x)),  y, residuals = model.forward(c(p), c(x))
    backward(p, r, dy) = (dparams in p's dtypes, dx in x's dtype),
                         dparams, dx = model.backward(c(p), r, c(dy))

where c(·) rounds every floating leaf to `compute_dtype`. Every layer inside sees params and input
of one dtype (the library's dtype rule), the convolutions and matmuls run in `compute_dtype`, and
the gradient comes back in float32 for the optimiser to update the float32 masters. The cast is
the identity for the chain rule (dc(w)/dw = 1), so autodiff through `apply` and the hand-written
`backward` give the same gradient. bfloat16 has float32's exponent range, so no loss scaling is
needed; float16 would need it and is not offered.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnn.core import AnyLayer, Layer, StatefulLayer, fail, is_stateful

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def cast_floating(tree, dtype):
    """Every floating-point leaf of `tree` as `dtype`; other leaves (labels, keys) unchanged."""
    def cast(leaf):
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf
    return jax.tree.map(cast, tree)


def mixed_precision(model: AnyLayer, compute_dtype=jnp.bfloat16) -> AnyLayer:
    """`model` computing in `compute_dtype` ("bfloat16" or a dtype); params, input and output f32.

    See the module docstring for the three formulas. The residuals kept for `backward` are in
    `compute_dtype` (half the memory of float32 for bfloat16). A stateful model's state (e.g.
    BatchNorm's running statistics) is cast down for the call and its new state back up.
    """
    if isinstance(compute_dtype, str):
        if compute_dtype not in COMPUTE_DTYPES:
            fail("mixed_precision", f"compute dtype must be one of {sorted(COMPUTE_DTYPES)}, "
                                    f"got {compute_dtype!r}")
        compute_dtype = COMPUTE_DTYPES[compute_dtype]
    compute_dtype = jnp.dtype(compute_dtype)
    if compute_dtype not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16)):
        fail("mixed_precision", f"compute dtype must be float32 or bfloat16, got {compute_dtype}",
             exc=TypeError)
    name = f"mixed_precision[{compute_dtype.name}]({model.name})"

    def init(key, input_shape):
        return model.init(key, input_shape)

    def apply(params, x):
        y = model.apply(cast_floating(params, compute_dtype), x.astype(compute_dtype))
        return y.astype(x.dtype)

    def forward(params, x):
        y, residuals = model.forward(cast_floating(params, compute_dtype), x.astype(compute_dtype))
        return y.astype(x.dtype), (residuals, jnp.zeros((0,), x.dtype))

    def backward(params, residuals, dy):
        inner, x_token = residuals
        dparams, dx = model.backward(cast_floating(params, compute_dtype), inner,
                                     dy.astype(compute_dtype))
        dparams = jax.tree.map(lambda d, p: d.astype(p.dtype), dparams, params)
        return dparams, dx.astype(x_token.dtype)

    if not is_stateful(model):
        return Layer(name, init, forward, backward, apply)

    def like(new_state, state):
        return jax.tree.map(lambda n, s: n.astype(s.dtype), new_state, state)

    def forward_s(params, state, x, *, key=None, train):
        y, residuals, new_state = model.forward(
            cast_floating(params, compute_dtype), cast_floating(state, compute_dtype),
            x.astype(compute_dtype), key=key, train=train)
        return (y.astype(x.dtype), (residuals, jnp.zeros((0,), x.dtype)),
                like(new_state, state))

    def apply_s(params, state, x, *, key=None, train):
        y, new_state = model.apply(cast_floating(params, compute_dtype),
                                   cast_floating(state, compute_dtype), x.astype(compute_dtype),
                                   key=key, train=train)
        return y.astype(x.dtype), like(new_state, state)

    return StatefulLayer(name, init, forward_s, backward, apply_s)


__all__ = ["COMPUTE_DTYPES", "cast_floating", "mixed_precision"]
