"""The one step signature (jaxnn.train.step): (train_state, batch, key) -> (train_state, metrics)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn
from jaxnn import losses
from jaxnn.layers import BatchNorm, Dense, Dropout, Relu


def mlp():
    return jaxnn.serial(Dense(8), Relu(), Dense(3))


def data(n=12, d=4, seed=1):
    x = jax.random.normal(jax.random.key(seed), (n, d), jnp.float32)
    return x, jnp.arange(n, dtype=jnp.int32) % 3


def run(train, params, state, batch, steps=3):
    ts = train.init(params, state)
    metrics = []
    for i in range(steps):
        ts, m = train.step(ts, batch, jax.random.key(i))
        metrics.append(m)
    return ts, metrics


@pytest.fixture(autouse=True)
def standard_promotion():
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 counts with floats
        yield


@pytest.mark.parametrize("method", ["autodiff", "manual"])
@pytest.mark.parametrize("chunk", [None, 5])
def test_train_step_is_make_step_of_the_gradient_rule(method, chunk):
    model, loss, opt = mlp(), losses.softmax_cross_entropy(), optax.adam(1e-2)
    _, params, state = model.init(jax.random.key(0), (-1, 4))
    batch = data()
    a, ma = run(jaxnn.train_step(model, loss, opt, method, chunk=chunk), params, state, batch)
    b, mb = run(jaxnn.make_step(model, jaxnn.gradient(loss, method, chunk=chunk), opt), params,
                state, batch)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(x, y)
    for m in ma:
        assert {"loss", "update_norm"} <= set(m)
    assert isinstance(a, jaxnn.TrainState) and int(a.step) == 3
    assert float(ma[-1]["loss"]) < float(ma[0]["loss"])


def test_both_methods_and_a_chunked_step_reach_the_same_params():
    model, loss = mlp(), losses.softmax_cross_entropy()
    _, params, state = model.init(jax.random.key(0), (-1, 4))
    results = [run(jaxnn.train_step(model, loss, 0.1, method, chunk=chunk), params, state, data())[0]
               for method, chunk in (("autodiff", None), ("manual", None), ("manual", 5))]
    for other in results[1:]:
        for x, y in zip(jax.tree.leaves(results[0].params), jax.tree.leaves(other.params)):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["autodiff", "manual"])
def test_multisteps_over_two_halves_equals_one_step_over_the_whole_batch(method):
    """Gradient accumulation across calls is optax.MultiSteps around the optimiser: k calls on
    batches of n/k (mean loss) update the params as one call on the whole batch of n does."""
    model, loss = mlp(), losses.softmax_cross_entropy()
    _, params, state = model.init(jax.random.key(0), (-1, 4))
    x, y = data()
    whole = jaxnn.train_step(model, loss, optax.sgd(0.1), method)
    ts, _ = whole.step(whole.init(params, state), (x, y), jax.random.key(0))
    halves = jaxnn.train_step(model, loss, optax.MultiSteps(optax.sgd(0.1), 2), method)
    tm = halves.init(params, state)
    tm, _ = halves.step(tm, (x[:6], y[:6]), jax.random.key(0))
    for a, b in zip(jax.tree.leaves(tm.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(a, b)  # the first call only accumulates
    tm, _ = halves.step(tm, (x[6:], y[6:]), jax.random.key(1))
    for a, b in zip(jax.tree.leaves(tm.params), jax.tree.leaves(ts.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_plain_learning_rate_is_sgd():
    model, loss = mlp(), losses.softmax_cross_entropy()
    _, params, state = model.init(jax.random.key(0), (-1, 4))
    a, _ = run(jaxnn.train_step(model, loss, 0.1), params, state, data(), steps=2)
    b, _ = run(jaxnn.train_step(model, loss, optax.sgd(0.1)), params, state, data(), steps=2)
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="must be > 0"):
        jaxnn.train_step(model, loss, -1.0)


@pytest.mark.parametrize("method", ["autodiff", "manual"])
def test_a_model_with_batchnorm_advances_its_state(method):
    model = jaxnn.serial(Dense(6), BatchNorm(), Relu(), Dropout(0.2), Dense(3))
    _, params, state = model.init(jax.random.key(0), (-1, 4))
    ts, metrics = run(jaxnn.train_step(model, losses.softmax_cross_entropy(), 0.1, method),
                      params, state, data(), steps=2)
    assert jax.tree.structure(ts.model_state) == jax.tree.structure(state)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(ts.model_state),
                                                        jax.tree.leaves(state)))
    assert all(np.isfinite(float(m["update_norm"])) for m in metrics)
    with pytest.raises(ValueError, match="a model with state"):
        step = jaxnn.train_step(model, losses.softmax_cross_entropy(), 0.1, method, chunk=4)
        run(step, params, state, data(), steps=1)


def test_an_ascending_rule_moves_along_its_updates_and_its_state_advances():
    def hebb(model, params, batch, state):
        x, _ = batch
        return jax.tree.map(jnp.ones_like, params), state + 1, {"loss": jnp.sum(x)}

    model = mlp()
    _, params, state = model.init(jax.random.key(0), (-1, 4))
    rule = jaxnn.make_rule("ones", hebb, ascend=True, init=lambda p: jnp.zeros((), jnp.int32))
    ts, metrics = run(jaxnn.make_step(model, rule, 0.5), params, state, data(), steps=2)
    for new, old in zip(jax.tree.leaves(ts.params), jax.tree.leaves(params)):
        np.testing.assert_allclose(new, old + 1.0, rtol=1e-6)
    assert int(ts.rule_state) == 2 and set(metrics[0]) == {"loss", "update_norm"}


def test_eval_step_sums_over_chunks_and_batches():
    model, loss = mlp(), losses.softmax_cross_entropy()
    _, params, state = model.init(jax.random.key(0), (-1, 4))
    x, y = data(n=11)
    logits = model(params, x)
    whole = jaxnn.eval_step(model, loss)(params, state, x, y)
    cut = jaxnn.eval_step(model, loss, chunk=4)(params, state, x, y)
    parts = [jaxnn.eval_step(model, loss)(params, state, x[s], y[s]) for s in (slice(0, 6), slice(6, 11))]
    assert int(whole["correct"]) == int((logits.argmax(-1) == y).sum()) == int(cut["correct"])
    np.testing.assert_allclose(whole["loss"], 11 * loss.apply(logits, y), rtol=1e-5)
    np.testing.assert_allclose(cut["loss"], whole["loss"], rtol=1e-5)
    np.testing.assert_allclose(sum(float(p["loss"]) for p in parts), float(whole["loss"]), rtol=1e-5)
    assert set(jaxnn.eval_step(model)(params, state, x, y)) == {"correct"}


def test_bad_arguments():
    with pytest.raises(TypeError, match="model must be a jaxnn Layer"):
        jaxnn.make_step("model", jaxnn.gradient(losses.mse()))
    with pytest.raises(ValueError, match="method must be one of"):
        jaxnn.gradient(losses.mse(), "symbolic")
    with pytest.raises(ValueError, match="chunk must be None or a positive int"):
        jaxnn.train_step(mlp(), losses.mse(), 0.1, chunk=0)
