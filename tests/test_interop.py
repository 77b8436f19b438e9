"""jaxnn.interop on a LeNet-5 block, both ways: a Flax NNX block inside a jaxnn model (backward by
jax.vjp, labelled so), and jaxnn's LeNet-5 block inside a Flax model (backward hand-written)."""

import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn as nn
from jaxnn import interop
from jaxnn.check import compare
from tests._grads import assert_manual_equals_autodiff

nnx = pytest.importorskip("flax.nnx")
linen = pytest.importorskip("flax.linen")


class FlaxLeNetBlock(nnx.Module):
    """C1-S2-C3-S4 of LeNet-5 in Flax: (N, 28, 28, 1) -> (N, 5, 5, 16)."""

    def __init__(self, rngs):
        self.c1 = nnx.Conv(1, 6, (5, 5), padding="SAME", rngs=rngs)
        self.c3 = nnx.Conv(6, 16, (5, 5), padding="VALID", rngs=rngs)

    def __call__(self, x):
        x = nnx.max_pool(nnx.relu(self.c1(x)), (2, 2), (2, 2))
        return nnx.max_pool(nnx.relu(self.c3(x)), (2, 2), (2, 2))


def _jaxnn_block():
    return nn.serial(nn.Conv2D(6, 5, padding="SAME"), nn.Relu(), nn.MaxPool(2),
                     nn.Conv2D(16, 5), nn.Relu(), nn.MaxPool(2))


def _batch(n=3):
    k1, k2 = jax.random.split(jax.random.key(1))
    return jax.random.normal(k1, (n, 28, 28, 1)), jax.random.randint(k2, (n,), 0, 10)


def test_flax_nnx_block_as_a_jaxnn_layer():
    block = interop.from_nnx(FlaxLeNetBlock)
    assert block.name == "FlaxNNX(FlaxLeNetBlock)[backward=jax.vjp]"
    model = nn.serial(block, nn.Flatten(), nn.Dense(10))
    out_shape, params, _ = model.init(jax.random.key(0), (-1, 28, 28, 1))
    assert out_shape == (-1, 10)
    x, y = _batch()
    # Forward: the same numbers as the Flax module itself, built from the same key.
    flax_block = FlaxLeNetBlock(nnx.Rngs(params=jax.random.split(jax.random.key(0), 7)[0]))
    np.testing.assert_array_equal(block(params[0], x), flax_block(x))
    assert_manual_equals_autodiff(model, params, x, y, rtol=1e-5)


def test_jaxnn_block_as_a_flax_nnx_module_keeps_its_hand_written_backward():
    layer = _jaxnn_block()
    module = interop.to_nnx(layer, (-1, 28, 28, 1), rngs=nnx.Rngs(0))
    assert module.output_shape == (-1, 5, 5, 16)
    x, _ = _batch()
    w = jax.random.normal(jax.random.key(3), (3, 5, 5, 16))
    params = module.params.get_value()
    np.testing.assert_array_equal(module(x), layer(params, x))
    got = nnx.grad(lambda m: jnp.sum(m(x) * w))(module)["params"].get_value()
    want = jax.grad(lambda p: jnp.sum(layer(p, x) * w))(params)   # autodiff
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))
    # Proof that the layer's own rule runs: a layer whose rule says dx = 2 dy (deliberately not
    # the derivative of y = x) gets 2 from jax.grad through the Flax module, autodiff 1.
    doubling = nn.make_layer("Doubling", lambda key, shape: (shape, ()), lambda p, v: (v, ()),
                             lambda p, r, dy: ((), 2 * dy))
    for manual, want_dx in ((True, 2.0), (False, 1.0)):
        step = interop.to_nnx(doubling, (-1, 3), rngs=nnx.Rngs(0), manual=manual)
        np.testing.assert_array_equal(jax.grad(lambda v, step=step: step(v).sum())(jnp.ones((2, 3))), want_dx)


def test_linen_both_ways():
    dense = interop.from_linen(linen.Dense(4))
    assert dense.name == "FlaxLinen(Dense)[backward=jax.vjp]"
    _, params, _ = dense.init(jax.random.key(0), (-1, 36))
    report = compare.compare_layer(dense, params, jnp.ones((2, 36)), key=jax.random.key(2),
                                   methods=("manual", "reverse"))
    assert report["agree"] and report["case"] == "FlaxLinen(Dense)[backward=jax.vjp]"

    module = interop.to_linen(_jaxnn_block())
    x, _ = _batch()
    variables = module.init(jax.random.key(0), x)
    assert module.apply(variables, x).shape == (3, 5, 5, 16)
    g_manual = jax.grad(lambda v: module.apply(v, x).sum())(variables)
    g_auto = jax.grad(lambda v: interop.to_linen(_jaxnn_block(), manual=False).apply(v, x).sum())(
        variables)
    for a, b in zip(jax.tree.leaves(g_manual), jax.tree.leaves(g_auto)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * float(jnp.max(jnp.abs(b))))


def test_bad_input_and_unsupported_modules_are_refused_by_name():
    block = interop.from_nnx(lambda rngs: nnx.Conv(1, 6, (5, 5), rngs=rngs))
    _, params, _ = block.init(jax.random.key(0), (-1, 28, 28, 1))
    with pytest.raises(nn.LayerTypeError, match=r"FlaxNNX\(Conv\)\[backward=jax.vjp\]: expected "
                                                r"input dtype float32 \(the params' dtype\), got float16"):
        block(params, jnp.zeros((1, 28, 28, 1), jnp.float16))
    with pytest.raises(nn.LayerTypeError, match="expected a floating-point input, got dtype uint8"):
        block(params, jnp.zeros((1, 28, 28, 1), jnp.uint8))
    with pytest.raises(nn.LayerError, match=r"FlaxNNX\(BatchNorm\).*also holds BatchStat"):
        interop.from_nnx(lambda rngs: nnx.BatchNorm(3, rngs=rngs))


def test_without_flax_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "flax.nnx", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxnn\[flax\]'"):
        interop.from_nnx(FlaxLeNetBlock)
