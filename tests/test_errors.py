"""Bad input fails early with an error naming the layer (and its place in serial)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn as nn
from jaxnn.models import lenet5


@pytest.mark.parametrize("make,match", [
    (lambda: nn.Dense(0), r"Dense: features must be positive"),
    (lambda: nn.Dense(2.5), r"Dense: features must be an int"),
    (lambda: nn.Conv2D(-1, 3), r"Conv2D: features must be positive"),
    (lambda: nn.Conv2D(4, (3, 0)), r"Conv2D: kernel_size must be positive"),
    (lambda: nn.Conv2D(4, (3, 3, 3)), r"Conv2D: kernel_size must be an int or 2 ints"),
    (lambda: nn.Conv2D(4, 3, strides=0), r"Conv2D: strides must be positive"),
    (lambda: nn.Conv2D(4, 3, padding="FULL"), r"Conv2D: padding must be 'SAME', 'VALID'"),
    (lambda: nn.Conv2D(4, 3, padding=((1, -1), (0, 0))), r"Conv2D: explicit padding must be two"),
    (lambda: nn.MaxPool(0), r"MaxPool: window must be positive"),
    (lambda: nn.MaxPool(2, strides=-2), r"MaxPool: strides must be positive"),
    (lambda: nn.AvgPool(2, padding="same-ish"), r"AvgPool: padding must be"),
    (lambda: nn.Reshape((0, 3)), r"Reshape: shape must be positive ints"),
    (lambda: nn.FanOut(0), r"FanOut: num must be positive"),
    (lambda: nn.serial(nn.Dense(2), "tanh"), r"serial\[1\]: expected a Layer, got str"),
    (lambda: lenet5("vintage"), r"lenet5: variant must be one of"),
])
def test_invalid_constructor_arguments_fail_when_built(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("make,layer,arg", [
    (lambda: nn.Dropout(rate=NAN), "Dropout", "rate"),
    (lambda: nn.Dropout(rate=-INF), "Dropout", "rate"),
    (lambda: nn.BatchNorm(momentum=NAN), "BatchNorm", "momentum"),
    (lambda: nn.BatchNorm(eps=INF), "BatchNorm", "eps"),
    (lambda: nn.BatchNorm(eps=NAN), "BatchNorm", "eps"),
    (lambda: nn.LayerNorm(eps=INF), "LayerNorm", "eps"),
    (lambda: nn.LayerNorm(eps=NAN), "LayerNorm", "eps"),
    (lambda: nn.LSTM(4, forget_bias=NAN), "LSTM", "forget_bias"),
    (lambda: nn.RateRNN(4, tau=NAN), "RateRNN", "tau"),
    (lambda: nn.RateRNN(4, tau=INF), "RateRNN", "tau"),
    (lambda: nn.RateRNN(4, dt=NAN), "RateRNN", "dt"),
    (lambda: nn.RateRNN(4, noise=NAN), "RateRNN", "noise"),
    (lambda: nn.RateRNN(4, noise=INF), "RateRNN", "noise"),
    (lambda: nn.RateRNN(4, rec_gain=NAN), "RateRNN", "rec_gain"),
    (lambda: nn.RateRNN(4, dale=True, exc_fraction=NAN), "RateRNN", "exc_fraction"),
    (lambda: nn.RateRNN(4, connectivity=NAN), "RateRNN", "connectivity"),
    (lambda: nn.ScaledTanh(a=INF), "ScaledTanh", "a"),
    (lambda: nn.ScaledTanh(s=NAN), "ScaledTanh", "s"),
    (lambda: nn.RBF(2, centers=[[0.0, NAN], [1.0, 1.0]]), "RBF", "centers"),
])
def test_non_finite_hyperparameters_are_refused_at_construction(make, layer, arg):
    with pytest.raises(nn.LayerError, match=f"^{layer}: {arg} must be finite"):
        make()


@pytest.mark.parametrize("model,shape,match", [
    (nn.serial(nn.Dense(3), nn.Conv2D(2, 3)), (4, 5),
     r"serial\[1\] Conv2D: expected an input of rank 4, got shape \(4, 3\)"),
    (nn.serial(nn.Conv2D(2, 7)), (1, 5, 5, 1),
     r"serial\[0\] Conv2D: window \(7, 7\) with padding .* does not fit spatial size \(5, 5\)"),
    (nn.serial(nn.Flatten()), (5,), r"serial\[0\] Flatten: expected an input of rank >= 2"),
    (nn.serial(nn.Tanh(), nn.Reshape((7,))), (2, 3, 4),
     r"serial\[1\] Reshape: cannot reshape examples of shape \(3, 4\) \(12 values\) to \(7,\)"),
    (nn.MaxPool(2), (8, 8, 1), r"MaxPool: expected an input of rank 4, got shape \(8, 8, 1\)"),
    (nn.Dense(3), (4, 0), r"Dense: expected positive sizes"),
    (nn.serial(nn.Dense(2), nn.serial(nn.Tanh(), nn.MaxPool(2))), (3, 4),
     r"serial\[1\] serial\[1\] MaxPool: expected an input of rank 4"),
])
def test_bad_input_shape_fails_at_init_naming_the_layer(model, shape, match):
    with pytest.raises(ValueError, match=match):
        model.init(jax.random.key(0), shape)


def test_bad_shape_at_trace_time_names_layer_and_position():
    model = nn.serial(nn.Dense(4), nn.Relu(), nn.Dense(3))
    _, params, _ = model.init(jax.random.key(0), (-1, 5))
    bad = jnp.zeros((2, 6))
    for fn in (model, jax.jit(lambda p, x: model(p, x)),
               lambda p, x: model.forward(p, (), x, train=False)[0]):
        with pytest.raises(ValueError, match=r"serial\[0\] Dense: expected trailing axes \(5,\), "
                                             r"got input shape \(2, 6\)"):
            fn(params, bad)


def test_lenet5_rejects_wrong_image_size_at_trace_time():
    model = lenet5()
    _, params, _ = model.init(jax.random.key(0), (-1, 28, 28, 1))
    with pytest.raises(ValueError, match=r"serial\[7\] Dense: expected trailing axes \(400,\), "
                                         r"got input shape \(2, 576\)"):
        jax.jit(lambda p, x: model(p, x))(params, jnp.zeros((2, 32, 32, 1)))
    with pytest.raises(ValueError, match=r"serial\[0\] Conv2D: expected trailing axes \(1,\)"):
        model(params, jnp.zeros((2, 28, 28, 3)))


def test_integer_input_is_a_type_error_naming_the_layer():
    model = nn.serial(nn.Dense(2))
    _, params, _ = model.init(jax.random.key(0), (1, 3))
    with pytest.raises(TypeError, match=r"serial\[0\] Dense: expected a floating-point input, got "
                                        r"dtype int32"):
        model(params, jnp.zeros((1, 3), jnp.int32))


def test_wrong_params_for_model():
    model = nn.serial(nn.Dense(2), nn.Tanh())
    with pytest.raises(ValueError, match=r"serial: expected params for 2 layers, got 1"):
        model(((),), jnp.zeros((1, 3)))


def test_init_shape_must_be_ints():
    with pytest.raises(TypeError, match=r"Dense: expected an input shape as a tuple of ints"):
        nn.Dense(2).init(jax.random.key(0), (2, 3.0))


def test_errors_from_jax_itself_are_not_relabelled():
    model = nn.serial(nn.Dense(2))
    _, params, _ = model.init(jax.random.key(0), (1, 3))
    with pytest.raises(TypeError) as info:
        model(params, "not an array")
    assert isinstance(info.value, nn.LayerTypeError)


# ------------------------------------------------------- regressions from a user review
def test_as_custom_vjp_keeps_each_calls_residuals_apart():
    """Two calls with different static residuals inside one jax.grad (once a shared dict)."""
    flat = nn.as_custom_vjp(nn.Flatten())
    a, b = jnp.arange(24.0).reshape(2, 3, 4), jnp.arange(24.0).reshape(2, 4, 3)

    def f(a, b):
        return (flat((), a) ** 2).sum() + (flat((), b) * 3).sum()

    da, db = jax.grad(f, argnums=(0, 1))(a, b)
    np.testing.assert_array_equal(da, 2 * a)
    np.testing.assert_array_equal(db, jnp.full((2, 4, 3), 3.0))


def test_parallel_checks_params_layers_and_locates_apply_errors():
    model = nn.parallel(nn.Dense(2), nn.Dense(3))
    _, params, _ = model.init(jax.random.key(0), ((1, 4), (1, 5)))
    xs = (jnp.ones((1, 4)), jnp.ones((1, 5)))
    with pytest.raises(nn.LayerError, match="parallel: expected params for 2 layers, got 1"):
        model(params[:1], xs)
    with pytest.raises(nn.LayerError, match="parallel: expected params for 2 layers, got 1"):
        model.forward(params[:1], (), xs, train=False)
    with pytest.raises(nn.LayerTypeError, match=r"parallel\[1\]: expected a Layer, got function"):
        nn.parallel(nn.Dense(2), nn.Tanh)
    with pytest.raises(nn.LayerError, match=r"parallel\[1\] Dense: expected trailing axes \(5,\)"):
        model(params, (jnp.ones((1, 4)), jnp.ones((1, 6))))


def test_eval_step_sums_a_sum_reduced_loss_once():
    model = nn.serial(nn.Dense(3))
    _, params, _ = model.init(jax.random.key(0), (4, 2))
    x, y = jax.random.normal(jax.random.key(1), (4, 2)), jnp.array([0, 1, 2, 0])
    total = float(nn.losses.softmax_cross_entropy("sum").apply(model(params, x), y))
    for reduction in ("sum", "mean"):
        got = nn.eval_step(model, nn.losses.softmax_cross_entropy(reduction))(params, (), x, y)
        np.testing.assert_allclose(float(got["loss"]), total, rtol=1e-6)


@pytest.mark.parametrize("layer,shape", [
    (nn.Conv2D(2, 3), (1, 5, 5, 1)), (nn.Conv2D(2, 3), (1, 5, 5, 2)), (nn.Dense(3), (2, 4)),
    (nn.Subsample(2), (1, 4, 4, 2)), (nn.LayerNorm(), (2, 3)),
])
def test_one_dtype_rule_input_must_match_the_weights(layer, shape):
    _, params, _ = layer.init(jax.random.key(0), shape)
    with jax.enable_x64(True):
        x = jnp.ones(shape, jnp.float64)
        with pytest.raises(nn.LayerTypeError,
                           match=f"{layer.name}: expected input dtype float32 .*got float64"):
            layer(params, x)


def test_eval_step_sums_every_term_of_a_mean_loss_over_time_steps():
    """A "mean" loss divides by every example axis (here batch × time), not the batch alone."""
    model = nn.serial(nn.Dense(3))
    _, params, _ = model.init(jax.random.key(0), (2, 5, 4))
    x, y = jax.random.normal(jax.random.key(1), (2, 5, 4)), jnp.zeros((2, 5), jnp.int32)
    total = float(nn.losses.softmax_cross_entropy("sum").apply(model(params, x), y))
    got = nn.eval_step(model, nn.losses.softmax_cross_entropy("mean"))(params, (), x, y)
    np.testing.assert_allclose(float(got["loss"]), total, rtol=1e-6)
