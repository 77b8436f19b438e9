"""CPUConv2D computes Conv2D: the same values, the same gradients by autodiff (forward and
reverse mode, second order) and by its hand-written backward, on the geometries where its
forms differ (one input channel at stride 1; several channels at stride 1, with columns that
fit and that do not; strided). Conv2D itself is a row of jaxnn.check.cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.backprop import manual_vjp
from jaxnn.layers import Conv2D, CPUConv2D, conv_cpu
from jaxnn.models import lenet5

GEOMETRIES = [  # (features, kernel, strides, padding, input shape)
    (3, (3, 2), 1, "SAME", (2, 6, 5, 1)),
    (3, (3, 2), 1, "VALID", (2, 6, 5, 1)),
    (4, (3, 2), 1, ((1, 0), (2, 1)), (2, 6, 5, 3)),
    (2, 3, 2, "SAME", (2, 7, 6, 1)),
]


def _close(a, b, tol=1e-12):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=tol, atol=tol), a, b)


def _both(features, kernel, strides, padding, shape):
    """Conv2D, CPUConv2D, their params (one init) and an input, in float64."""
    plain = Conv2D(features, kernel, strides, padding, dtype=jnp.float64)
    fast = CPUConv2D(features, kernel, strides, padding, dtype=jnp.float64)
    _, params, _ = plain.init(jax.random.key(0), shape)
    x = jax.random.normal(jax.random.key(1), shape, jnp.float64)
    return plain, fast, params, x


def _every_gradient(geometry):
    """Values, hand-written, reverse, forward (each argument) and second-order derivatives of
    both layers, in one compiled call."""
    plain, fast, params, x = _both(*geometry)

    @jax.jit
    def run(params, x):
        y = plain(params, x)
        dy = jax.random.normal(jax.random.key(2), y.shape, y.dtype)
        tw = jax.tree.map(lambda a: jax.random.normal(jax.random.key(3), a.shape, a.dtype), params)
        tx = jax.random.normal(jax.random.key(4), x.shape, x.dtype)

        def hvp(layer):  # a Hessian-vector product in x
            def grad_x(v):
                return jax.grad(lambda u: jnp.sum(jnp.sin(layer(params, u))))(v)
            return jax.jvp(grad_x, (x,), (tx,))[1]

        return [(layer(params, x), manual_vjp(layer, params, x, dy),
                 jax.vjp(layer, params, x)[1](dy),
                 jax.jvp(lambda p, layer=layer: layer(p, x), (params,), (tw,)),
                 jax.jvp(lambda v, layer=layer: layer(params, v), (x,), (tx,)), hvp(layer))
                for layer in (fast, plain)]

    return run(params, x)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=["1ch_same", "1ch_valid", "3ch", "strided"])
def test_values_and_every_gradient_equal_conv2d(geometry):
    with jax.enable_x64(True):
        fast, plain = _every_gradient(geometry)
    _close(fast[:-1], plain[:-1])
    _close(fast[-1], plain[-1], 1e-10)


def test_input_gradient_when_the_columns_do_not_fit(monkeypatch):
    monkeypatch.setattr(conv_cpu, "COLUMNS_BYTES", 0)  # as with a batch too large for them
    with jax.enable_x64(True):
        fast, plain = _every_gradient(GEOMETRIES[2])
    _close(fast[1], plain[1])


def test_lenet5_with_cpu_conv_is_the_same_model():
    plain, fast = lenet5("modern"), lenet5("modern", conv=CPUConv2D)
    _, params, _ = plain.init(jax.random.key(0), (-1, 28, 28, 1))
    x = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    np.testing.assert_allclose(fast(params, x), plain(params, x), rtol=1e-5, atol=1e-5)
