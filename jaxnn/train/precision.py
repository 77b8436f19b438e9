"""Mixed precision: compute in a low-precision dtype, keep float32 master parameters.

    model16 = mixed_precision(lenet5(), jnp.bfloat16)

`model16` is a `Layer` with the same params and state pytrees (float32) as `model`; with
c(·) rounding every floating leaf to `compute_dtype`:

    apply(p, s, x)        = (y, s'),  y, s' = model.apply(c(p), c(s), c(x));  y in x's dtype,
                                       s' in s's dtypes
    forward(p, s, x)      = (y, (residuals, dtype token of x), s'),  from model.forward(c(p), c(s), c(x))
    backward(p, r, dy)    = (dparams in p's dtypes, dx in x's dtype),
                            dparams, dx = model.backward(c(p), r, c(dy))

Every layer inside sees params and input of one dtype (the library's dtype rule), the
convolutions and matmuls run in `compute_dtype`, and the gradient comes back in float32 for the
optimiser to update the float32 masters. The cast is the identity for the chain rule
(dc(w)/dw = 1), so autodiff through `apply` and the hand-written `backward` give the same
gradient. bfloat16 has float32's exponent range, so no loss scaling is needed; float16 would
need it and is not offered. A model without state has state `()`, which the casts leave as is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnn.core import Layer, fail, make_stateful_layer

COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def cast_floating(tree, dtype):
    """Every floating-point leaf of `tree` as `dtype`; other leaves (labels, keys) unchanged."""
    def cast(leaf):
        return leaf.astype(dtype) if jnp.issubdtype(leaf.dtype, jnp.floating) else leaf
    return jax.tree.map(cast, tree)


def _like(new, old):
    """`new` with the dtypes of `old` (the same pytree structure)."""
    return jax.tree.map(lambda n, o: n.astype(o.dtype), new, old)


def mixed_precision(model: Layer, compute_dtype=jnp.bfloat16) -> Layer:
    """`model` computing in `compute_dtype` ("bfloat16" or a dtype); params, state, input and
    output keep their own dtypes (float32).

    See the module docstring for the three formulas. The residuals kept for `backward` are in
    `compute_dtype` (half the memory of float32 for bfloat16).
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

    def c(tree):
        return cast_floating(tree, compute_dtype)

    def forward(params, state, x, *, key=None, train):
        y, residuals, new_state = model.forward(c(params), c(state), c(x), key=key, train=train)
        return _like(y, x), (residuals, jnp.zeros((0,), x.dtype)), _like(new_state, state)

    def apply(params, state, x, *, key=None, train):
        y, new_state = model.apply(c(params), c(state), c(x), key=key, train=train)
        return _like(y, x), _like(new_state, state)

    def backward(params, residuals, dy):
        inner, x_token = residuals
        dparams, dx = model.backward(c(params), inner, c(dy))
        return _like(dparams, params), dx.astype(x_token.dtype)

    return make_stateful_layer(name, model.init, forward, backward, apply)


__all__ = ["COMPUTE_DTYPES", "cast_floating", "mixed_precision"]
