"""Every row of jaxnn.check.cases: init's shape is apply's shape; backward equals jax.vjp; check_grads passes.

Tolerances: float32 agreement to rtol = atol = 1e-5 (sums of a few hundred products); float64
(with jax_enable_x64) to 1e-10.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized
from jax.test_util import check_grads

from jaxnn.check.cases import LAYER_CASES

ROWS = [(c.id, c.make, c.input_shape) for c in LAYER_CASES]
NUMERIC_ROWS = [(c.id, c.make, c.input_shape) for c in LAYER_CASES if c.numeric]

TOL = {jnp.float32: 1e-5, jnp.float64: 1e-10}


def _concrete(shape):
    return tuple(2 if d == -1 else d for d in shape)


def _setup(make, input_shape, dtype, seed=0):
    k_init, k_x, k_dy = jax.random.split(jax.random.key(seed), 3)
    layer = make()
    out_shape, params = layer.init(k_init, input_shape)
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    x = jax.random.normal(k_x, input_shape, dtype)
    return layer, out_shape, params, x, k_dy


def _random_like(key, tree):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, a.shape, a.dtype)
                                        for k, a in zip(keys, leaves)])


class LayerContractTest(chex.TestCase):

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*ROWS)
    def test_init_shape_matches_apply(self, make, input_shape):
        layer, out_shape, params, x, _ = _setup(make, input_shape, jnp.float32)
        y = self.variant(layer.apply)(params, x)
        chex.assert_trees_all_equal_shapes(jax.ShapeDtypeStruct(out_shape, jnp.float32), y)
        y_fwd, _ = self.variant(layer.forward)(params, x)
        chex.assert_trees_all_close(y_fwd, y, rtol=1e-6, atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(*ROWS)
    def test_backward_matches_vjp_float32(self, make, input_shape):
        self._check_backward(make, input_shape, jnp.float32)

    @parameterized.named_parameters(*ROWS)
    def test_backward_matches_vjp_float64(self, make, input_shape):
        with jax.enable_x64(True):
            self.variant = jax.jit
            self._check_backward(make, input_shape, jnp.float64)

    def _check_backward(self, make, input_shape, dtype):
        layer, _, params, x, k_dy = _setup(make, input_shape, dtype)
        y, vjp = jax.vjp(layer.apply, params, x)
        dy = _random_like(k_dy, y)
        want_dparams, want_dx = vjp(dy)

        def manual(params, x, dy):
            y, residuals = layer.forward(params, x)
            return layer.backward(params, residuals, dy)

        dparams, dx = self.variant(manual)(params, x, dy)
        chex.assert_trees_all_equal_structs(dparams, params)
        chex.assert_trees_all_equal_shapes_and_dtypes(dparams, params)
        chex.assert_trees_all_close(dparams, want_dparams, rtol=TOL[dtype], atol=TOL[dtype])
        chex.assert_trees_all_close(dx, want_dx, rtol=TOL[dtype], atol=TOL[dtype])
        assert any(float(jnp.abs(leaf).max()) > 0 for leaf in jax.tree.leaves(dx)) or \
            "heaviside" in layer.name.lower() or not jax.tree.leaves(dx), "gradient is all zeros"

    @parameterized.named_parameters(*NUMERIC_ROWS)
    def test_check_grads(self, make, input_shape):
        with jax.enable_x64(True):
            layer, _, params, x, _ = _setup(make, input_shape, jnp.float64)
            check_grads(layer.apply, (params, x), order=1, modes=["rev"], atol=1e-6, rtol=1e-6)


def test_heaviside_backward_is_zero_or_straight_through():
    import jaxnn as nn
    x = jnp.array([[-1.5, 0.3, 2.0]])
    dy = jnp.array([[1.0, 2.0, 3.0]])
    for straight, want in [(False, np.zeros((1, 3))), (True, np.asarray(dy))]:
        layer = nn.Heaviside(straight_through=straight)
        y, res = layer.forward((), x)
        np.testing.assert_array_equal(y, [[0.0, 1.0, 1.0]])
        np.testing.assert_array_equal(layer.backward((), res, dy)[1], want)
        np.testing.assert_array_equal(jax.vjp(layer.apply, (), x)[1](dy)[1], want)


def test_maxpool_splits_ties_equally():
    import jaxnn as nn
    x = jnp.array([1.0, 3.0, 3.0, 0.0]).reshape(1, 2, 2, 1)
    layer = nn.MaxPool(2)
    y, res = layer.forward((), x)
    _, dx = layer.backward((), res, jnp.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(dx.reshape(-1), [0.0, 0.5, 0.5, 0.0])
