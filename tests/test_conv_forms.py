"""Conv2D's formulations against a plain `lax` convolution.

With one input channel `apply` evaluates shifted slices and JAX differentiates a `lax`
convolution in w and the stacked windows in x: these tests hold JAX's derivatives of `apply`
(forward and reverse mode, either argument alone, second order) to those of the `lax`
convolution. The hand-written backward's input gradient at stride 1 goes through the columns,
or the transposed convolution when they do not fit: both are checked against reverse mode.
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


@pytest.mark.parametrize("columns_bytes", [None, 0])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_hand_written_input_gradient_both_paths(monkeypatch, columns_bytes, padding):
    # Stride 1, several input channels: dC/dx through the columns (default), or, when they
    # do not fit (COLUMNS_BYTES = 0), as the transposed convolution; both equal reverse mode.
    from jaxnn.layers import conv

    if columns_bytes is not None:
        monkeypatch.setattr(conv, "COLUMNS_BYTES", columns_bytes)
    with jax.enable_x64(True):
        layer = Conv2D(4, (3, 2), padding=padding, dtype=jnp.float64)
        _, params = layer.init(jax.random.key(0), (-1, 6, 5, 3))
        x = jax.random.normal(jax.random.key(1), (2, 6, 5, 3), jnp.float64)
        y, residuals = layer.forward(params, x)
        dy = jax.random.normal(jax.random.key(2), y.shape, y.dtype)
        dparams, dx = layer.backward(params, residuals, dy)
        want_dparams, want_dx = jax.vjp(lambda p, v: reference(p, v, padding), params, x)[1](dy)
        jaxpr = str(jax.make_jaxpr(layer.backward)(params, residuals, dy))
        assert jaxpr.count("conv_general_dilated") == (1 if columns_bytes is None else 2)
    np.testing.assert_allclose(dx, want_dx, rtol=1e-12, atol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12), dparams, want_dparams)
