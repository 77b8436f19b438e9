"""Conv2D with one input channel: evaluated as shifted slices, differentiated as stacked windows.

The two forms compute one function; these tests hold JAX's derivatives of `apply` (forward and
reverse mode, either argument alone, second order) to those of a plain `lax` convolution.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from jaxnn.layers import Conv2D


def reference(params, x, padding):
    y = lax.conv_general_dilated(x, params.w, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                 precision=lax.Precision.HIGHEST)
    return y + params.b.reshape(1, 1, 1, -1)


@pytest.fixture(params=["SAME", "VALID"])
def case(request):
    with jax.enable_x64(True):
        layer = Conv2D(3, (3, 2), padding=request.param, dtype=jnp.float64)
        _, params = layer.init(jax.random.key(0), (-1, 6, 5, 1))
        x = jax.random.normal(jax.random.key(1), (2, 6, 5, 1), jnp.float64)
        yield layer, params, x, request.param


def test_value_matches_convolution(case):
    layer, params, x, padding = case
    np.testing.assert_allclose(layer.apply(params, x), reference(params, x, padding), rtol=1e-12)
    np.testing.assert_allclose(layer.forward(params, x)[0], reference(params, x, padding), rtol=1e-12)


def test_forward_mode_in_each_argument(case):
    layer, params, x, padding = case
    tw = jax.tree.map(lambda a: jax.random.normal(jax.random.key(2), a.shape, a.dtype), params)
    tx = jax.random.normal(jax.random.key(3), x.shape, x.dtype)
    for f, g, primal, tangent in (
            (lambda p: layer.apply(p, x), lambda p: reference(p, x, padding), params, tw),
            (lambda v: layer.apply(params, v), lambda v: reference(params, v, padding), x, tx)):
        got, want = jax.jvp(f, (primal,), (tangent,)), jax.jvp(g, (primal,), (tangent,))
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12), got, want)


def test_reverse_and_second_order(case):
    layer, params, x, padding = case

    def energy(apply_fn):
        return lambda p, v: jnp.sum(jnp.sin(apply_fn(p, v)))

    ours, theirs = energy(layer.apply), energy(lambda p, v: reference(p, v, padding))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12),
                 jax.grad(ours, argnums=(0, 1))(params, x), jax.grad(theirs, argnums=(0, 1))(params, x))
    # Hessian-vector product in x: differentiating the custom rule again.
    v = jax.random.normal(jax.random.key(4), x.shape, x.dtype)
    hvp = lambda f: jax.jvp(lambda u: jax.grad(f, argnums=1)(params, u), (x,), (v,))[1]  # noqa: E731
    np.testing.assert_allclose(hvp(ours), hvp(theirs), rtol=1e-10, atol=1e-12)
