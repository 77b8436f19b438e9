"""Forward values of the table's layers against references that share no code with them.

A bug shared by a layer's forward and backward (a transposed window, a wrong padding side)
passes the backward-vs-jax.vjp check, because jax.vjp differentiates the same wrong forward.
So every row of jaxnn.check.cases with a NumPy reference (the adapters of
experiments.backprop.compare_backprop) has its forward value checked, in float64, against
experiments/backprop/numpy_reference.py. The pools have two code paths (a reshape for windows
that tile the input, `reduce_window` otherwise); the table must cover both.

Tolerance: float64 to 1e-12 relative (different summation orders).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.backprop.compare_backprop import CONV_GEOMETRY, NUMPY_REFERENCES, POOL_GEOMETRY
from jaxnn.check.cases import LAYER_CASES, select

TOL = {"float32": 1e-5, "float64": 1e-12}
# Layers the NumPy reference implements: each of their rows must have an adapter.
REFERENCED_LAYERS = {"Dense", "Conv2D", "AvgPool", "MaxPool", "Flatten", "Tanh", "Sigmoid", "Relu"}


def _inputs(case, dtype, seed=0):
    """(layer, params, x), every entry ~ N(0, 1) (biases too, so a misplaced one shows).

    Drawn with NumPy on init's shapes: eager jax.random would compile a kernel per shape."""
    rng = np.random.default_rng(seed)
    layer = case.make()
    shapes = jax.eval_shape(lambda key: layer.init(key, case.input_shape)[1], jax.random.key(0))
    params = jax.tree.map(lambda s: jnp.asarray(rng.standard_normal(s.shape).astype(dtype)), shapes)
    return layer, params, jnp.asarray(rng.standard_normal(case.input_shape).astype(dtype))


def _jaxpr_text(fn, *args):
    """The printed jaxpr, nested calls included: which primitives a code path uses."""
    return str(jax.make_jaxpr(fn)(*args))


def _assert_close(got, want, dtype):
    assert got.shape == want.shape, (got.shape, want.shape)
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               rtol=TOL[dtype], atol=TOL[dtype])


def test_every_referenced_layer_row_has_a_reference():
    ids = {c.id for c in LAYER_CASES}
    assert set(NUMPY_REFERENCES) <= ids and set(CONV_GEOMETRY) <= ids and set(POOL_GEOMETRY) <= ids
    missing = [c.id for c in LAYER_CASES
               if c.make().name in REFERENCED_LAYERS and c.id not in NUMPY_REFERENCES]
    assert not missing, f"rows without a NumPy reference in experiments/backprop/compare_backprop.py: {missing}"


@pytest.mark.parametrize("case_id", sorted(NUMPY_REFERENCES))
def test_forward_matches_numpy_reference(case_id, dtype="float64"):
    (case,) = select([case_id])
    with jax.enable_x64(dtype == "float64"):
        layer, params, x = _inputs(case, dtype)
        want, _ = NUMPY_REFERENCES[case_id](jax.tree.map(np.asarray, params), np.asarray(x))
        y = jax.jit(lambda p, v: layer(p, v))(params, x)
        assert y.dtype == jnp.dtype(dtype)
        _assert_close(y, want, dtype)


def test_pool_rows_cover_both_paths():
    paths = {}
    for case in select(POOL_GEOMETRY):
        layer, params, x = _inputs(case, "float32")
        window_reduce = "reduce_window" in _jaxpr_text(lambda p, v, layer=layer: layer(p, v), params, x)
        paths.setdefault(POOL_GEOMETRY[case.id][0], set()).add(window_reduce)
    assert paths == {"avg": {True, False}, "max": {True, False}}, paths
