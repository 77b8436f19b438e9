"""jaxnn.check.compare finds agreement where the rules are right and reports a disagreement where not."""

import jax
import jax.numpy as jnp
import pytest

import jaxnn as nn
from jaxnn import losses
from jaxnn.check import compare


def _layer_inputs(layer, shape, key, dtype=jnp.float32):
    k_init, k_x = jax.random.split(key)
    _, params, _ = layer.init(k_init, shape)
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    return params, jax.random.normal(k_x, shape, dtype)


def _twice_dy_tanh():
    """Tanh whose hand-written backward doubles the gradient: dx = 2·dy·(1 - y²)."""
    return nn.Tanh()._replace(name="BrokenTanh",
                              backward=lambda params, y, dy: ((), 2 * dy * (1 - y * y)))


def _rows(result, pair):
    return [r for r in result["rows"] if r["pair"] == pair]


@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Dense(3), (4, 5)),
    (lambda: nn.Conv2D(2, 3, strides=2, padding="SAME"), (1, 5, 4, 2)),
])
def test_real_layers_agree_every_way(make, shape, key):
    layer = make()
    params, x = _layer_inputs(layer, shape, key)
    result = compare.compare_layer(layer, params, x, key=key)
    assert result["agree"], compare.format_markdown(result)
    assert result["methods"] == ["manual", "reverse", "forward", "finite_diff"]
    assert {r["tensor"] for r in result["rows"]} == {"dparams.w", "dparams.b", "dx"}
    assert all(r["coords"] == r_n for r, r_n in zip(
        _rows(result, "manual vs reverse"), [a.size for a in (params.w, params.b, x)]))


def test_float64_meets_the_tight_tolerance(key):
    with jax.enable_x64(True):
        layer = nn.serial(nn.Dense(4), nn.Tanh(), nn.Dense(2))
        params, x = _layer_inputs(layer, (3, 5), key, jnp.float64)
        result = compare.compare_layer(layer, params, x, key=key)
    assert result["dtype"] == "float64" and result["agree"], compare.format_markdown(result)
    manual = _rows(result, "manual vs reverse")
    assert manual and all(r["tol_rel"] == 1e-10 and r["max_rel"] < 1e-12 for r in manual)
    assert all(r["max_rel"] < 1e-6 for r in _rows(result, "finite_diff vs reverse"))


def test_broken_backward_is_reported(key):
    layer = _twice_dy_tanh()
    params, x = _layer_inputs(layer, (3, 4), key)
    result = compare.compare_layer(layer, params, x, key=key)
    assert not result["agree"]
    (manual,) = _rows(result, "manual vs reverse")
    assert not manual["agree"] and manual["max_rel"] == pytest.approx(1.0, rel=1e-5)
    # the independent methods still agree with reverse mode: the fault is the manual rule
    assert all(r["agree"] for r in result["rows"] if r["a"] != "manual")
    assert "**NO**" in compare.format_markdown(result)


def test_extra_results_are_compared_and_checked_for_shape(key):
    layer = nn.Tanh()
    params, x = _layer_inputs(layer, (3, 4), key)
    dy = jnp.ones((3, 4), jnp.float32)
    right = ((), dy * (1 - jnp.tanh(x) ** 2))
    result = compare.compare_layer(layer, params, x, dy, key=key, methods=("reverse",),
                                   extra={"by_hand": right, "wrong": ((), 3 * right[1])})
    verdicts = {r["a"]: r["agree"] for r in result["rows"]}
    assert verdicts == {"by_hand": True, "wrong": False}
    with pytest.raises(ValueError, match="sizes"):
        compare.compare_layer(layer, params, x, dy, key=key, methods=("reverse",),
                              extra={"short": ((), dy[:2])})


def test_coordinate_methods_skip_large_inputs_with_a_reason(key):
    layer = nn.Dense(4)
    params, x = _layer_inputs(layer, (2, 8), key)
    result = compare.compare_layer(layer, params, x, key=key, max_size=10)
    assert set(result["skipped"]) == {"forward", "finite_diff"}
    assert "max_size=10" in result["skipped"]["forward"]
    assert result["agree"] and "skipped" in compare.format_markdown(result)


def test_losses_agree_and_a_wrong_loss_backward_does_not():
    pred = jnp.array([[0.3, -1.2, 2.0], [0.1, 0.4, -0.5]], jnp.float32)
    labels = jnp.array([2, 0])
    ce = losses.softmax_cross_entropy()
    assert compare.compare_loss(ce, pred, labels)["agree"]
    halved = ce._replace(backward=lambda residuals, dloss: 0.5 * ce.backward(residuals, dloss))
    result = compare.compare_loss(halved, pred, labels)
    assert [r["agree"] for r in _rows(result, "manual vs reverse")] == [False]


def test_compare_model_on_a_tiny_serial_model(key):
    model = nn.serial(nn.Conv2D(2, 3), nn.Relu(), nn.Flatten(), nn.Dense(3))
    params, x = _layer_inputs(model, (2, 5, 5, 1), key)
    labels = jnp.array([0, 2])
    result = compare.compare_model(model, losses.softmax_cross_entropy(), params, x, labels,
                                   key=key, max_size=40, subset=5)
    assert result["agree"], compare.format_markdown(result)
    fd = {r["tensor"]: r["coords"] for r in _rows(result, "finite_diff vs reverse")}
    # 5 sampled coordinates per tensor, or all of a smaller one (the biases)
    assert fd == {"dparams[0].w": 5, "dparams[0].b": 2, "dparams[3].w": 5, "dparams[3].b": 3}


def test_time_fns_reports_median_and_memory():
    fns = {"double": lambda a: 2 * a, "square": lambda a: a * a}
    timings = compare.time_fns(fns, jnp.ones((8,), jnp.float32), repeats=3)
    assert set(timings) == set(fns)
    for t in timings.values():
        assert t["repeats"] == 3 and 0 < t["min_s"] <= t["median_s"]
        assert t["output_bytes"] in (None, 32)
