"""The seam: manual and autodiff gradients of whole models agree; custom_vjp; train steps."""

import random

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _grads import assert_manual_equals_autodiff

import jaxnn as nn
from jaxnn import losses
from jaxnn.models import lenet5


def random_mlp(seed):
    """A serial model of random depth (1-7 layers) over vectors of width 5."""
    rng = random.Random(seed)
    layers = []
    for _ in range(rng.randint(1, 7)):
        kind = rng.choice(["dense", "dense", "tanh", "sigmoid", "relu", "identity", "branch"])
        if kind == "dense":
            layers.append(nn.Dense(rng.randint(1, 6)))
        elif kind == "branch":
            layers += [nn.FanOut(2), nn.parallel(nn.Dense(3), nn.Dense(3)), nn.FanInSum()]
        else:
            layers.append({"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.Relu,
                           "identity": nn.Identity}[kind]())
    layers.append(nn.Dense(3))
    return nn.serial(*layers), (4, 5)


def random_convnet(seed):
    """A serial conv model of random depth over (2, 10, 9, 2) images."""
    rng = random.Random(seed)
    layers = []
    for _ in range(rng.randint(1, 3)):
        layers.append(nn.Conv2D(rng.randint(1, 3), rng.choice([1, 2, 3]), strides=rng.choice([1, 2]),
                                padding=rng.choice(["SAME", "VALID", ((1, 0), (0, 1))])))
        layers.append(rng.choice([nn.Tanh, nn.Sigmoid, nn.Identity])())
        if rng.random() < 0.5:
            layers.append(rng.choice([nn.AvgPool, nn.MaxPool])(2, padding="SAME"))
    layers += [nn.Flatten(), nn.Dense(3)]
    return nn.serial(*layers), (2, 10, 9, 2)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("build", [random_mlp, random_convnet])
def test_random_serial_models_manual_equals_autodiff(build, seed):
    model, in_shape = build(seed)
    k_init, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    _, params, _ = model.init(k_init, in_shape)
    x = jax.random.normal(k_x, in_shape)
    y = jax.random.randint(k_y, (in_shape[0],), 0, 3)
    assert_manual_equals_autodiff(model, params, x, y, rtol=1e-5)


@pytest.mark.parametrize("variant", ["modern", "classic"])
def test_lenet5_manual_equals_autodiff(variant):
    model = lenet5(variant)
    out_shape, params, _ = model.init(jax.random.key(1), (-1, 28, 28, 1))
    assert out_shape == (-1, 10)
    x = jax.random.normal(jax.random.key(2), (8, 28, 28, 1))
    y = jnp.arange(8) % 10
    assert_manual_equals_autodiff(model, params, x, y, rtol=1e-4)
    assert len(params) == 12 and params[0].w.shape == (5, 5, 1, 6) and params[7].w.shape == (400, 120)


def test_value_and_grad_eager_equals_jit():
    model, in_shape = random_mlp(3)
    _, params, state = model.init(jax.random.key(0), in_shape)
    x = jax.random.normal(jax.random.key(1), in_shape)
    y = jnp.array([0, 1, 2, 0])
    loss = losses.softmax_cross_entropy()
    for method in nn.backprop.METHODS:
        eager = nn.value_and_grad(model, loss, method, jit=False)(params, state, x, y)
        jitted = nn.value_and_grad(model, loss, method)(params, state, x, y)
        chex.assert_trees_all_close(eager, jitted, rtol=1e-6, atol=1e-7)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="method must be one of"):
        nn.value_and_grad(nn.Dense(2), losses.mse(), "symbolic")


def test_as_custom_vjp_makes_jax_grad_use_the_manual_rule():
    dense = nn.Dense(3)
    _, params, _ = dense.init(jax.random.key(0), (4, 2))
    x = jax.random.normal(jax.random.key(1), (4, 2))
    f = lambda layer: lambda p, x: jnp.sum(jnp.sin(layer(p, x)))  # noqa: E731
    chex.assert_trees_all_close(jax.grad(f(nn.as_custom_vjp(dense)), (0, 1))(params, x),
                                jax.grad(f(dense), (0, 1))(params, x), rtol=1e-6)

    # A deliberately wrong rule (twice the true gradient) shows which backward jax.grad ran.
    doubled = dense._replace(backward=lambda p, r, dy: jax.tree.map(lambda g: 2 * g,
                                                                      dense.backward(p, r, dy)))
    got = jax.grad(f(nn.as_custom_vjp(doubled)), 1)(params, x)
    chex.assert_trees_all_close(got, 2 * jax.grad(f(dense), 1)(params, x), rtol=1e-6)


def test_as_custom_vjp_handles_static_residuals_inside_jit():
    model = nn.as_custom_vjp(nn.serial(nn.Conv2D(2, 3), nn.AvgPool(2), nn.Flatten(), nn.Dense(2)))
    _, params, _ = model.init(jax.random.key(0), (2, 6, 6, 1))
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 1))
    g = jax.jit(jax.grad(lambda p: jnp.sum(model(p, x) ** 2)))(params)
    plain = jax.grad(lambda p: jnp.sum(model.forward(p, (), x, train=False)[0] ** 2))(params)
    chex.assert_trees_all_close(g, plain, rtol=1e-5, atol=1e-6)


def test_train_steps_manual_and_autodiff_follow_the_same_path():
    model = nn.serial(nn.Conv2D(4, 3, padding="SAME"), nn.Relu(), nn.MaxPool(2), nn.Flatten(),
                      nn.Dense(10))
    _, params0, _ = model.init(jax.random.key(0), (-1, 8, 8, 1))
    x = jax.random.normal(jax.random.key(1), (16, 8, 8, 1))
    y = jax.random.randint(jax.random.key(2), (16,), 0, 10)
    loss = losses.softmax_cross_entropy()
    opt = optax.adam(1e-2)
    runs = {}
    # optax's Adam mixes int32 step counts with floats, which strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        for method in nn.backprop.METHODS:
            runs[method] = _train(nn.train_step(model, loss, opt, method), params0, x, y)
    np.testing.assert_allclose(runs["manual"][1], runs["autodiff"][1], rtol=1e-4)
    assert runs["manual"][1][-1] < 0.5 * runs["manual"][1][0]
    chex.assert_trees_all_close(runs["manual"][0], runs["autodiff"][0], rtol=1e-3, atol=1e-4)


def _train(train_step, params0, x, y, steps=20):
    init, step = train_step
    ts = init(jax.tree.map(jnp.copy, params0))
    history = []
    for i in range(steps):
        ts, metrics = step(ts, (x, y), jax.random.key(i))
        history.append(float(metrics["loss"]))
    return ts.params, np.array(history)


def test_eval_step_counts_correct_predictions():
    model = nn.Identity()
    logits = jnp.array([[0.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    metrics = nn.eval_step(model, losses.softmax_cross_entropy())((), (), logits, jnp.array([1, 1, 1]))
    assert int(metrics["correct"]) == 2
    chex.assert_trees_all_close(metrics["loss"], 3 * losses.softmax_cross_entropy().apply(
        logits, jnp.array([1, 1, 1])))
