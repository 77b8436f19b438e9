"""State, keys and train/eval: BatchNorm's statistics, Dropout's mask, keys by position in
serial, and models with state through value_and_grad, train_step and eval_step.

The agreement checks of every layer with state or a key (backward vs jax.vjp of the
fixed-state view, finite differences) are rows of jaxnn.check.cases, run by tests/test_layers.py.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn as nn
from jaxnn import losses
from jaxnn.check.cases import select, setup


def test_batchnorm_statistics_and_running_averages():
    bn = nn.BatchNorm(momentum=0.75)
    _, params, state = bn.init(jax.random.key(0), (-1, 3))
    x = jnp.array([[1.0, 2.0, -1.0], [3.0, 2.0, 1.0], [5.0, 2.0, 3.0], [7.0, 2.0, 5.0]])
    y, new_state = bn.apply(params, state, x, train=True)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(y[:, 0].var(), 5.0 / (5.0 + 1e-5), rtol=1e-5)  # var 5, eps 1e-5
    np.testing.assert_allclose(y[:, 1], 0, atol=1e-6)  # a constant feature normalises to 0
    np.testing.assert_allclose(new_state.mean, 0.25 * np.array([4.0, 2.0, 2.0]), rtol=1e-6)
    np.testing.assert_allclose(new_state.var, 0.75 + 0.25 * np.array([5.0, 0.0, 5.0]), rtol=1e-6)
    y_eval, same = bn.apply(params, new_state, x, train=False)
    chex.assert_trees_all_equal(same, new_state)
    want = (np.asarray(x) - np.asarray(new_state.mean)) / np.sqrt(np.asarray(new_state.var) + 1e-5)
    np.testing.assert_allclose(y_eval, want, rtol=1e-5)


def test_batchnorm_eval_output_of_one_example_ignores_the_rest():
    s = setup(select(["batchnorm_nhwc_eval"])[0])
    layer, params, x = s.layer, s.params, s.x
    _, state = layer.apply(params, s.state, x, train=True)  # non-trivial running statistics
    alone = layer(params, x[:1], state=state)
    other_batch = jnp.concatenate([x[:1], 10 * x[1:] - 3])
    together = layer(params, other_batch, state=state)[:1]
    np.testing.assert_allclose(alone, together, rtol=1e-6, atol=1e-6)
    in_train = layer(params, other_batch, state=state, train=True)[:1]
    assert not np.allclose(in_train, alone, atol=1e-3)  # training uses the batch's statistics


def test_dropout_rate_is_the_drop_probability_and_eval_needs_no_key():
    drop = nn.Dropout(0.75)
    x = jnp.ones((200, 100))
    y = drop((), x, key=jax.random.key(0), train=True)
    kept = float((y != 0).mean())
    assert abs(kept - 0.25) < 0.02, kept
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 4.0])  # inverted scaling 1/(1-p)
    np.testing.assert_array_equal(drop((), x), x)
    with pytest.raises(nn.LayerTypeError, match="Dropout: train=True .* needs a key"):
        drop((), x, train=True)
    with pytest.raises(nn.LayerTypeError, match=r"serial\[1\] Dropout: train=True"):
        model = nn.serial(nn.Dense(3), nn.Dropout(0.5))
        _, p, s = model.init(jax.random.key(0), (2, 4))
        model.apply(p, s, jnp.ones((2, 4)), train=True)
    with pytest.raises(nn.LayerError, match="Dropout: rate .* must be in"):
        nn.Dropout(1.0)


def test_serial_keys_differ_by_position_and_train_is_required():
    model = nn.serial(nn.Dropout(0.5), nn.Dropout(0.5))
    _, p, s = model.init(jax.random.key(0), (1, 64))
    y, _ = model.apply(p, s, jnp.ones((1, 64)), key=jax.random.key(7), train=True)
    first = nn.Dropout(0.5)((), jnp.ones((1, 64)), key=jax.random.fold_in(jax.random.key(7), 0),
                            train=True)
    second = nn.Dropout(0.5)((), first, key=jax.random.fold_in(jax.random.key(7), 1), train=True)
    np.testing.assert_array_equal(y, second)
    with pytest.raises(TypeError, match="train"):
        model.apply(p, s, jnp.ones((1, 64)))


def test_train_must_be_a_python_bool():
    bn = nn.BatchNorm()
    _, p, s = bn.init(jax.random.key(0), (4, 3))
    with pytest.raises(nn.LayerTypeError, match="BatchNorm: train must be a Python bool.*static_argnames"):
        jax.jit(bn.apply)(p, s, jnp.ones((4, 3)), train=True)
    y, _ = jax.jit(bn.apply, static_argnames="train")(p, s, jnp.ones((4, 3)), train=True)
    assert y.shape == (4, 3)


def test_state_is_empty_unless_a_layer_has_some():
    assert nn.serial(nn.Dense(3), nn.Relu()).init(jax.random.key(0), (2, 4))[2] == ()
    _, _, state = nn.serial(nn.Dense(3), nn.BatchNorm()).init(jax.random.key(0), (2, 4))
    assert state[0] == () and isinstance(state[1], nn.BatchNormState)


def test_a_model_with_state_needs_its_state():
    model = nn.serial(nn.Dense(3), nn.BatchNorm(), nn.Relu())
    _, p, s = model.init(jax.random.key(0), (4, 2))
    x = jnp.ones((4, 2))
    with pytest.raises(nn.LayerTypeError, match=r"serial\[1\] BatchNorm: expected its state"):
        model(p, x)
    with pytest.raises(nn.LayerTypeError, match=r"BatchNorm: expected its state"):
        nn.intermediates(model, p, x)
    with pytest.raises(nn.LayerError, match="serial: expected state for 3 layers, got 1"):
        model.apply(p, s[:1], x, train=False)
    outs = nn.intermediates(model, p, x, state=s)
    np.testing.assert_allclose(outs[-1][1], model(p, x, state=s))


@pytest.mark.parametrize("method", ["autodiff", "manual"])
def test_train_and_eval_steps_of_a_model_with_state(method):
    model = nn.serial(nn.Dense(8), nn.BatchNorm(), nn.Relu(), nn.Dropout(0.2), nn.Dense(3))
    _, params, state = model.init(jax.random.key(0), (-1, 5))
    x = jax.random.normal(jax.random.key(1), (16, 5))
    y = jnp.arange(16) % 3
    loss = losses.softmax_cross_entropy()
    (j_a, s_a), g_a = nn.value_and_grad(model, loss, "autodiff")(params, state, x, y, jax.random.key(2))
    (j_m, s_m), g_m = nn.value_and_grad(model, loss, method)(params, state, x, y, jax.random.key(2))
    chex.assert_trees_all_close(j_m, j_a, rtol=1e-6)
    chex.assert_trees_all_close(s_m, s_a, rtol=1e-6)
    chex.assert_trees_all_close(g_m, g_a, rtol=1e-5, atol=1e-6)
    assert not np.allclose(s_a[1].mean, state[1].mean)  # the running mean moved

    with jax.numpy_dtype_promotion("standard"):  # optax's step count is an int
        init, step = nn.train_step(model, loss, optax.sgd(0.1), method)
        evaluate = nn.eval_step(model, loss)
        before = evaluate(params, state, x, y)
        ts = init(params, state)
        for i in range(30):
            ts, metrics = step(ts, (x, y), jax.random.key(10 + i))
        after = evaluate(ts.params, ts.model_state, x, y)
    assert int(ts.step) == 30 and "update_norm" in metrics
    assert float(after["loss"]) < float(before["loss"])
    assert int(after["correct"]) > int(before["correct"])


def test_intermediates_and_layer_gradients_agree():
    model = nn.serial(nn.Conv2D(2, 3, padding="SAME"), nn.Tanh(), nn.AvgPool(2), nn.Flatten(),
                      nn.Dense(3))
    _, params, _ = model.init(jax.random.key(0), (4, 6, 6, 1))
    x = jax.random.normal(jax.random.key(1), (4, 6, 6, 1))
    y = jnp.array([0, 1, 2, 1])
    outs = nn.intermediates(model, params, x)
    assert [name for name, _ in outs] == ["serial[0] Conv2D", "serial[1] Tanh", "serial[2] AvgPool",
                                          "serial[3] Flatten", "serial[4] Dense"]
    np.testing.assert_allclose(outs[-1][1], model(params, x), rtol=1e-6)
    loss = losses.softmax_cross_entropy()
    manual = nn.layer_gradients(model, loss, params, x, y, "manual")
    auto = nn.layer_gradients(model, loss, params, x, y, "autodiff")
    for m, a in zip(manual, auto):
        chex.assert_trees_all_close(m["dx"], a["dx"], rtol=1e-5, atol=1e-6)
        chex.assert_trees_all_close(m["dparams"], a["dparams"], rtol=1e-5, atol=1e-6)
    grads = nn.value_and_grad(model, loss)(params, (), x, y)[1]
    chex.assert_trees_all_close(tuple(m["dparams"] for m in manual), grads, rtol=1e-5, atol=1e-6)
    # dC/dX of the last layer is dJ/dlogits = (softmax - onehot) / N
    want = (jax.nn.softmax(outs[-1][1]) - jax.nn.one_hot(y, 3)) / 4
    np.testing.assert_allclose(manual[-1]["dx"], want, rtol=1e-5, atol=1e-7)


def test_scan_applies_the_layer_at_every_step_and_carries_its_state():
    inner = nn.serial(nn.Dense(4), nn.Tanh(), nn.Reshape((2, 2)), nn.Flatten())
    layer = nn.Scan(inner)
    out_shape, params, _ = layer.init(jax.random.key(0), (3, 5, 6))
    assert out_shape == (3, 5, 4)
    x = jax.random.normal(jax.random.key(1), (3, 5, 6))
    y = layer(params, x)
    for t in range(5):
        np.testing.assert_allclose(y[:, t], inner(params, x[:, t]), rtol=1e-6)
    # BatchNorm's running statistics advance once per time step
    bn = nn.Scan(nn.BatchNorm(momentum=0.5))
    _, p, s = bn.init(jax.random.key(0), (4, 3, 2))
    _, s3 = bn.apply(p, s, jnp.ones((4, 3, 2)), train=True)
    np.testing.assert_allclose(s3.mean, 1 - 0.5 ** 3, rtol=1e-6)


def test_norm_forward_values_against_numpy():
    """Forward values against an independent NumPy formula (not only backward vs jax.vjp)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 5)).astype(np.float32) * 3 + 1
    ln = nn.LayerNorm(eps=1e-3)
    params = nn.NormParams(jnp.asarray(rng.normal(size=5), jnp.float32),
                           jnp.asarray(rng.normal(size=5), jnp.float32))
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    want = (x - mu) / np.sqrt(var + 1e-3) * np.asarray(params.scale) + np.asarray(params.offset)
    np.testing.assert_allclose(ln(params, jnp.asarray(x)), want, rtol=1e-5, atol=1e-5)

    bn = nn.BatchNorm(eps=1e-3)
    _, _, state = bn.init(jax.random.key(0), x.shape)
    mu, var = x.mean((0, 1)), x.var((0, 1))
    want = (x - mu) / np.sqrt(var + 1e-3) * np.asarray(params.scale) + np.asarray(params.offset)
    np.testing.assert_allclose(bn.apply(params, state, jnp.asarray(x), train=True)[0], want,
                               rtol=1e-5, atol=1e-5)


def test_eval_of_a_model_with_state_in_chunks_equals_whole():
    model = nn.serial(nn.Conv2D(4, 3, padding="SAME"), nn.BatchNorm(), nn.Relu(), nn.Flatten(),
                      nn.Dropout(0.5), nn.Dense(3))
    case = select(["serial_conv_bn_eval"])[0]._replace(make=lambda: model, input_shape=(10, 6, 6, 1))
    s = setup(case)
    y = jnp.arange(10) % 3
    loss = losses.softmax_cross_entropy()
    whole = nn.eval_step(model, loss, chunk=None)(s.params, s.state, s.x, y)
    chunked = nn.eval_step(model, loss, chunk=4)(s.params, s.state, s.x, y)
    assert int(whole["correct"]) == int(chunked["correct"])
    np.testing.assert_allclose(float(chunked["loss"]), float(whole["loss"]), rtol=1e-5)
