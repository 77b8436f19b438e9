"""The 1998 LeNet-5 layers: the paper's C3 table and parameter counts, masked gradients,
the layers' formulas on small inputs, and the "lecun1998" model's manual = autodiff grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _grads import assert_manual_equals_autodiff

import jaxnn as nn
from jaxnn.backprop import manual_vjp
from jaxnn.models import LENET5_ALL_VARIANTS, LENET5_VARIANTS, lenet5, lenet5_stages

# Table I of LeCun et al. (1998), written out column by column: the S2 maps each C3 map sees.
PAPER_C3_INPUTS = [
    {0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}, {0, 4, 5}, {0, 1, 5},
    {0, 1, 2, 3}, {1, 2, 3, 4}, {2, 3, 4, 5}, {0, 3, 4, 5}, {0, 1, 4, 5}, {0, 1, 2, 5},
    {0, 1, 3, 4}, {1, 2, 4, 5}, {0, 2, 3, 5},
    {0, 1, 2, 3, 4, 5},
]


def _count(tree):
    return sum(leaf.size for leaf in jax.tree.leaves(tree))


def test_c3_table_is_the_papers():
    table = nn.LENET5_C3_TABLE
    assert table.shape == (6, 16) and table.dtype == np.bool_
    assert [set(np.flatnonzero(table[:, j]).tolist()) for j in range(16)] == PAPER_C3_INPUTS
    np.testing.assert_array_equal(table.sum(axis=0), [3] * 6 + [4] * 9 + [6])
    assert int(table.sum()) == 6 * 3 + 6 * 4 + 3 * 4 + 6 == 60
    with pytest.raises(ValueError):
        table[0, 0] = False


@pytest.fixture(scope="module")
def lecun1998():
    model = lenet5("lecun1998")
    out_shape, params, _ = model.init(jax.random.key(1), (-1, 28, 28, 1))
    return model, out_shape, params


def test_trainable_parameter_counts_match_the_paper(lecun1998):
    _, out_shape, params = lecun1998
    assert out_shape == (-1, 10)
    names = [name for name, _ in lenet5_stages("lecun1998")]
    by_name = dict(zip(names, params))
    c3 = by_name["C3"]
    mask = nn.LENET5_C3_TABLE
    assert c3.w.shape == (5, 5, 6, 16)
    assert int(mask.sum()) * 5 * 5 + c3.b.size == 1516
    assert int(np.count_nonzero(np.asarray(c3.w))) == 1500  # masked taps start at zero
    np.testing.assert_array_equal(np.asarray(c3.w)[:, :, ~mask], 0.0)
    counts = {"C1": 156, "S2": 12, "S4": 32, "C5": 48120, "F6": 10164}
    assert {name: _count(by_name[name]) for name in counts} == counts
    assert _count(by_name["output"]) == 0  # the RBF centers are fixed


def test_masked_weights_get_exactly_zero_gradient():
    layer = nn.PartialConv2D(16, 5, nn.LENET5_C3_TABLE)
    k_w, k_b, k_x, k_dy = jax.random.split(jax.random.key(3), 4)
    # Fill every tap, masked or not: the mask, not the stored zeros, must stop the gradient.
    params = nn.ConvParams(jax.random.normal(k_w, (5, 5, 6, 16)), jax.random.normal(k_b, (16,)))
    x = jax.random.normal(k_x, (2, 9, 9, 6))
    y = layer(params, x)
    dy = jax.random.normal(k_dy, y.shape)
    _, manual, _ = manual_vjp(layer, params, x, dy)
    autodiff, _ = jax.vjp(layer, params, x)[1](dy)
    mask = nn.LENET5_C3_TABLE
    for grads in (manual, autodiff):
        dw = np.asarray(grads.w)
        np.testing.assert_array_equal(dw[:, :, ~mask], 0.0)
        assert np.all(np.abs(dw[:, :, mask]).sum(axis=0) > 0)
    # and the masked taps do not reach the output
    zeroed = params._replace(w=params.w * jnp.asarray(mask, jnp.float32)[None, None])
    np.testing.assert_array_equal(layer(zeroed, x), y)


def test_lecun1998_manual_grads_equal_autodiff(lecun1998):
    model, _, params = lecun1998
    x = jax.random.normal(jax.random.key(2), (4, 28, 28, 1))
    labels = jnp.arange(4) % 10
    # atol: C1's weight gradient sums 3,136 products, in another order by each method.
    grads_a, grads_m = assert_manual_equals_autodiff(model, params, x, labels, rtol=1e-4, atol=2e-5)
    c3_index = [name for name, _ in lenet5_stages("lecun1998")].index("C3")
    for grads in (grads_a, grads_m):
        np.testing.assert_array_equal(np.asarray(grads[c3_index].w)[:, :, ~nn.LENET5_C3_TABLE], 0.0)


def test_scaled_tanh_maps_one_to_one():
    y = nn.ScaledTanh()((), jnp.array([-1.0, 0.0, 1.0]))
    np.testing.assert_allclose(y, [-1.0, 0.0, 1.0], atol=2e-4)


def test_subsample_is_coef_times_window_sum_plus_bias():
    x = jnp.arange(2 * 5 * 4 * 3, dtype=jnp.float32).reshape(2, 5, 4, 3)
    params = nn.SubsampleParams(jnp.array([1.0, 0.5, -2.0]), jnp.array([0.0, 1.0, 3.0]))
    layer = nn.Subsample(2)
    xs = np.asarray(x)[:, :4]  # the fifth row lies outside every window
    sums = xs.reshape(2, 2, 2, 2, 2, 3).sum(axis=(2, 4))
    want = sums * np.asarray(params.coef) + np.asarray(params.bias)
    np.testing.assert_allclose(layer(params, x), want, rtol=1e-6)
    _, init_params, _ = layer.init(jax.random.key(0), (-1, 5, 4, 3))
    np.testing.assert_array_equal(init_params.coef, np.full(3, 0.25, np.float32))
    np.testing.assert_array_equal(init_params.bias, np.zeros(3, np.float32))


def test_rbf_is_squared_distance_and_codes_are_fixed():
    centers = np.array([[1.0, -1.0, 1.0], [0.0, 2.0, 0.5]])
    x = jnp.array([[0.5, 0.0, -1.0]])
    y = nn.RBF(2, centers)((), x)
    np.testing.assert_allclose(y, [((np.asarray(x) - centers) ** 2).sum(axis=1)], rtol=1e-6)
    x84 = jnp.zeros((1, 84))
    y1, y2 = nn.RBF(10)((), x84), nn.RBF(10)((), x84)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(y1, np.full((1, 10), 84.0, np.float32))  # ±1 codes
    assert not np.array_equal(nn.RBF(10, seed=1)((), x84 + 0.5), nn.RBF(10)((), x84 + 0.5))


def test_variants_list_and_errors():
    assert "lecun1998" not in LENET5_VARIANTS
    assert LENET5_ALL_VARIANTS == LENET5_VARIANTS + ("lecun1998", "bn")
    with pytest.raises(ValueError, match=r"lenet5: variant must be one of .*lecun1998"):
        lenet5("lecun1999")


@pytest.mark.parametrize("make,match", [
    (lambda: nn.PartialConv2D(4, 5, nn.LENET5_C3_TABLE), r"PartialConv2D: table must have shape"),
    (lambda: nn.PartialConv2D(2, 3, [[0, 2]]), r"PartialConv2D: table must hold bools or 0/1"),
    (lambda: nn.RBF(3, np.ones((2, 4))), r"RBF: centers must have shape"),
    (lambda: nn.ScaledTanh(a="big"), r"ScaledTanh: a must be a real number"),
    (lambda: nn.Subsample(0), r"Subsample: window must be positive"),
])
def test_bad_arguments_name_the_layer(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


@pytest.mark.parametrize("layer,shape,match", [
    (nn.PartialConv2D(16, 5, nn.LENET5_C3_TABLE), (1, 14, 14, 4), r"PartialConv2D: table has 6 input"),
    (nn.RBF(3, np.ones((3, 4))), (2, 5), r"RBF: centers have 4 features"),
    (nn.Subsample(3), (1, 2, 6, 1), r"Subsample: window \(3, 3\) does not fit"),
])
def test_bad_input_shapes_name_the_layer(layer, shape, match):
    with pytest.raises(ValueError, match=match):
        layer.init(jax.random.key(0), shape)
