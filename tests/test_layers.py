"""Every row of jaxnn.check.cases (plain layers, layers with state or a key, recurrent layers,
combinators): init's shape is apply's shape in float32 and float64 (forward equals apply, the
state keeps its shapes and dtypes); in float64 the hand-written backward equals jax.vjp of the
fixed-state view and agrees with central finite differences of the forward, as
`jax.test_util.check_grads` checks a VJP (<dy, J t> against <backward(dy), t> for a random
direction t). The float32 gradients of every row are compared by
`python -m experiments.backprop.compare_backprop`, and of whole models by tests/test_backprop.py.

Tolerances: float32 forward agreement to rtol = atol = 2e-5; float64 (with jax_enable_x64) to
1e-10; finite differences (step 1e-4, float64) to 1e-6. Both dtypes of a row run as one
compiled call.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn as nn
from jaxnn.check import cases
from jaxnn.check.cases import LAYER_CASES, ROW_KEY

DTYPES = (jnp.float32, jnp.float64)
TOL = {jnp.float32: 2e-5, jnp.float64: 1e-10}
FD_EPS, FD_TOL = 1e-4, 1e-6


def _random_like(key, tree):
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, max(len(leaves), 1))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, a.shape, a.dtype)
                                        for k, a in zip(keys, leaves)])


def _vdot(a, b):
    return sum(jnp.vdot(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _one_dtype(case, layer, dtype, static):
    """Everything a row's checks compare, in one dtype (traced inside `_check`)."""
    key = jax.random.key(ROW_KEY) if case.key else None
    static["out_shape"], params, state, x = cases.build(case, layer, dtype, jax.random.key(0))
    view = cases.view(case, layer, state)
    y_apply, new_state = layer.apply(params, state, x, key=key, train=case.train)
    y_forward, residuals, forward_state = layer.forward(params, state, x, key=key, train=case.train)
    out = dict(params=params, state=state, y_apply=y_apply, y_forward=y_forward,
               new_state=new_state, forward_state=forward_state)
    if dtype != jnp.float64:
        return out
    y, vjp = jax.vjp(view, params, x)
    dy = _random_like(jax.random.key(4), y)
    got = layer.backward(params, residuals, dy)
    fd = ()
    if dtype == jnp.float64 and case.numeric:  # <dy, J t> by central differences
        t = _random_like(jax.random.key(5), (params, x))

        def moved(sign):
            return view(*jax.tree.map(lambda a, d: a + sign * FD_EPS * d, (params, x), t))

        fd = (_vdot(dy, jax.tree.map(lambda u, v: (u - v) / (2 * FD_EPS), moved(1), moved(-1))),
              _vdot(got, t))
    return dict(out, y=y, want=vjp(dy), got=got, fd=fd)


def _check(case):
    layer, static = case.make(), {}
    with jax.enable_x64(True):
        results = jax.jit(lambda: [_one_dtype(case, layer, d, static) for d in DTYPES])()
        for dtype, r in zip(DTYPES, results):
            tol = TOL[dtype]
            chex.assert_trees_all_equal_shapes_and_dtypes(r["y_apply"], jax.ShapeDtypeStruct(
                tuple(2 if d == -1 else d for d in static["out_shape"]), dtype))
            chex.assert_trees_all_close(r["y_forward"], r["y_apply"], rtol=tol, atol=tol)
            chex.assert_trees_all_close(r["forward_state"], r["new_state"], rtol=tol, atol=tol)
            chex.assert_trees_all_equal_shapes_and_dtypes(r["new_state"], r["state"])
            if "got" not in r:
                continue
            chex.assert_trees_all_close(r["y"], r["y_apply"], rtol=tol, atol=tol)
            chex.assert_trees_all_equal_structs(r["got"][0], r["params"])
            chex.assert_trees_all_equal_shapes_and_dtypes(r["got"][0], r["params"])
            chex.assert_trees_all_close(r["got"], r["want"], rtol=tol, atol=tol)
            assert case.id.startswith("heaviside") or any(
                np.abs(np.asarray(leaf)).max() > 0 for leaf in jax.tree.leaves(r["got"][1])), "dx is 0"
            if r["fd"]:
                np.testing.assert_allclose(float(r["fd"][1]), float(r["fd"][0]), rtol=FD_TOL,
                                           atol=FD_TOL)


@pytest.mark.parametrize("case", LAYER_CASES, ids=[c.id for c in LAYER_CASES])
def test_row(case):
    """Shapes and forward in float32 and float64; backward vs jax.vjp and finite differences
    in float64 (finite differences where the row is `numeric`)."""
    _check(case)


def test_a_wrong_backward_is_caught():
    """The row check itself: a Tanh whose rule doubles dx fails."""
    broken = nn.Tanh()._replace(backward=lambda p, y, dy: ((), 2 * dy * (1 - y * y)))
    with pytest.raises(AssertionError):
        _check(cases.Case("broken_tanh", lambda: broken, (3, 4)))


def test_table_ids_are_unique_and_cover_every_layer_kind():
    ids = [c.id for c in LAYER_CASES]
    assert len(ids) == len(set(ids))
    names = {c.make().name for c in LAYER_CASES}
    for layer in ("Dense", "Conv2D", "BatchNorm", "Dropout", "LSTM", "RNN", "RateRNN", "Scan(Dense)",
                  "LayerNorm", "PartialConv2D", "serial"):
        assert layer in names, layer
    assert any(c.train for c in LAYER_CASES) and any(c.key for c in LAYER_CASES)


def test_heaviside_backward_is_zero_or_straight_through():
    x = jnp.array([[-1.5, 0.3, 2.0]])
    dy = jnp.array([[1.0, 2.0, 3.0]])
    for straight, want in [(False, np.zeros((1, 3))), (True, np.asarray(dy))]:
        layer = nn.Heaviside(straight_through=straight)
        y, dparams, dx = nn.backprop.manual_vjp(layer, (), x, dy)
        np.testing.assert_array_equal(y, [[0.0, 1.0, 1.0]])
        np.testing.assert_array_equal(dx, want)
        np.testing.assert_array_equal(jax.vjp(layer, (), x)[1](dy)[1], want)


def test_maxpool_splits_ties_equally():
    x = jnp.array([1.0, 3.0, 3.0, 0.0]).reshape(1, 2, 2, 1)
    _, _, dx = nn.backprop.manual_vjp(nn.MaxPool(2), (), x, jnp.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(dx.reshape(-1), [0.0, 0.5, 0.5, 0.0])
