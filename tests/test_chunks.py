"""Chunked gradients and forward passes (jaxnn.train.chunks) equal the whole batch's up to
float32 rounding; a model with state is refused when its gradient would be chunked."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import backprop, losses, serial
from jaxnn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool, Relu
from jaxnn.train import chunks

BATCH = 10  # cut as 4+3+3 by chunk=4: a ragged split, two chunk shapes


def small_convnet():
    return serial(Conv2D(3, 3, padding="SAME"), Relu(), MaxPool(2), Flatten(), Dense(4))


@pytest.fixture(scope="module")
def problem():
    model = small_convnet()
    _, params, state = model.init(jax.random.key(0), (-1, 8, 8, 1))
    x = jax.random.normal(jax.random.key(1), (BATCH, 8, 8, 1), jnp.float32)
    labels = jax.random.randint(jax.random.key(2), (BATCH,), 0, 4)
    targets = jax.random.normal(jax.random.key(3), (BATCH, 4), jnp.float32)
    return model, params, state, x, labels, targets


def test_chunk_sizes_and_validation():
    assert chunks.chunk_sizes(10, None) == (10,)
    assert chunks.chunk_sizes(10, 4) == (4, 3, 3)
    assert chunks.chunk_sizes(1000, 128) == (125,) * 8
    assert chunks.chunk_sizes(100, 128) == (100,)
    for bad in (0, -3, 2.5, True, "auto"):
        with pytest.raises(ValueError, match="chunk must be None or a positive int"):
            chunks.chunk_sizes(10, bad)
        with pytest.raises(ValueError, match="chunk must be None or a positive int"):
            chunks.value_and_grad(small_convnet(), losses.mse(), "manual", bad)


@pytest.mark.parametrize("method", ["autodiff", "manual"])
@pytest.mark.parametrize("loss_name", ["cross_entropy", "mse_sum"])
def test_chunked_gradient_equals_the_whole_batch(problem, method, loss_name):
    model, params, state, x, labels, targets = problem
    loss, y = ((losses.softmax_cross_entropy(), labels) if loss_name == "cross_entropy"
               else (losses.mse("sum"), targets))
    whole = backprop.value_and_grad(model, loss, method)
    cut = jax.jit(chunks.value_and_grad(model, loss, method, 4))
    (want_value, _), want = whole(params, state, x, y)
    (value, new_state), got = cut(params, state, x, y)
    assert new_state == ()
    np.testing.assert_allclose(value, want_value, rtol=1e-6)
    assert jax.tree.structure(got) == jax.tree.structure(want)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


def test_a_model_with_state_is_refused_when_chunked_and_runs_whole():
    model = serial(Dense(5), BatchNorm(), Relu(), Dense(3))
    _, params, state = model.init(jax.random.key(0), (-1, 4))
    x = jnp.ones((6, 4), jnp.float32)
    y = jnp.zeros((6,), jnp.int32)
    loss = losses.softmax_cross_entropy()
    with pytest.raises(ValueError, match="a model with state"):
        chunks.value_and_grad(model, loss, "manual", 2)(params, state, x, y)
    (_, new_state), _ = chunks.value_and_grad(model, loss, "manual", 8)(params, state, x, y)
    assert jax.tree.structure(new_state) == jax.tree.structure(state)  # one chunk: the whole batch


def test_chunks_draw_their_own_keys_and_match_in_eval_mode():
    model = serial(Dense(6), Dropout(0.5), Dense(3))
    _, params, state = model.init(jax.random.key(0), (-1, 4))
    x = jax.random.normal(jax.random.key(1), (8, 4), jnp.float32)
    y = jnp.arange(8, dtype=jnp.int32) % 3
    loss = losses.softmax_cross_entropy()
    (value, _), _ = jax.jit(chunks.value_and_grad(model, loss, "autodiff", 4))(
        params, state, x, y, jax.random.key(2))
    assert np.isfinite(float(value))
    (v_eval, _), g_eval = chunks.value_and_grad(model, loss, "manual", 3, train=False)(params, state, x, y)
    (w_eval, _), want = backprop.value_and_grad(model, loss, "manual", train=False)(params, state, x, y)
    np.testing.assert_allclose(v_eval, w_eval, rtol=1e-6)
    for g, w in zip(jax.tree.leaves(g_eval), jax.tree.leaves(want)):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("chunk", [None, 3, 5, 16])
def test_predict_equals_apply(problem, chunk):
    model, params, state, x, *_ = problem
    got = jax.jit(chunks.predict(model, chunk))(params, state, x)
    np.testing.assert_allclose(got, model(params, x), rtol=1e-6, atol=1e-6)


def test_predict_holds_a_models_state_fixed():
    model = serial(Dense(5), BatchNorm(), Dense(2))
    _, params, state = model.init(jax.random.key(0), (-1, 3))
    x = jax.random.normal(jax.random.key(1), (7, 3), jnp.float32)
    got = chunks.predict(model, 2)(params, state, x)
    np.testing.assert_allclose(got, model(params, x, state=state), rtol=1e-6, atol=1e-6)
