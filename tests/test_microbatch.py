"""Micro-batched gradients and forward passes equal the plain ones up to float32 rounding."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnn import backprop, losses, microbatch, serial, train_step
from jaxnn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool, Relu

BATCH = 10  # cut as 4+3+3 by microbatch=4: a ragged split, two chunk shapes


def small_convnet():
    """Conv (one input channel: the stacked-window path) -> pool -> dense, on 8×8×1 images."""
    return serial(Conv2D(3, 3, padding="SAME"), Relu(), MaxPool(2), Flatten(), Dense(4))


@pytest.fixture(scope="module")
def problem():
    model = small_convnet()
    _, params = model.init(jax.random.key(0), (-1, 8, 8, 1))
    x = jax.random.normal(jax.random.key(1), (BATCH, 8, 8, 1), jnp.float32)
    labels = jax.random.randint(jax.random.key(2), (BATCH,), 0, 4)
    targets = jax.random.normal(jax.random.key(3), (BATCH, 4), jnp.float32)
    return model, params, x, labels, targets


def test_chunk_sizes():
    assert microbatch.chunk_sizes(10, None) == (10,)
    assert microbatch.chunk_sizes(10, 4) == (4, 3, 3)
    assert microbatch.chunk_sizes(1000, 128) == (125,) * 8
    assert microbatch.chunk_sizes(100, 128) == (100,)
    # LeNet-5's conv1 windows are 78,400 bytes per image: batch 2048 -> 16 chunks of 128.
    assert microbatch.chunk_sizes(2048, "auto", 78_400) == (128,) * 16
    assert microbatch.chunk_sizes(128, "auto", 78_400) == (128,)
    for bad in (0, -3, 2.5, True, "big"):
        with pytest.raises(ValueError, match="microbatch must be"):
            microbatch.chunk_sizes(10, bad)


def test_largest_intermediate_bytes():
    # Dense(2000)'s output, 2000 floats per example, is the largest array that grows with the
    # batch; nothing the size of the weights counts.
    model = serial(Dense(2000), Dense(3), Relu(), Dense(50))
    _, params = model.init(jax.random.key(0), (-1, 7))
    assert microbatch.largest_intermediate_bytes(model, params, (7,)) == 2000 * 4


def test_largest_intermediate_bytes_of_the_gradient():
    # One input channel: evaluation never stores the 25 windows, nor does reverse mode (conv1's
    # weight gradient is a convolution of x with dy); the hand-written chain rule does.
    model = serial(Conv2D(6, 5, padding="SAME"), Relu(), MaxPool(2), Flatten(), Dense(4))
    _, params = model.init(jax.random.key(0), (-1, 28, 28, 1))
    size = functools.partial(microbatch.largest_intermediate_bytes, model, params, (28, 28, 1))
    assert size() == size(gradient=True) == 6 * 784 * 4
    assert size(gradient=True, method="manual") == 25 * 784 * 4


@pytest.mark.parametrize("method", ["autodiff", "manual"])
def test_gradient_chunks_from_the_summed_pass(monkeypatch, method):
    # "auto" sizes a gradient's chunks by the sum of its pass's batch-sized arrays.
    model = serial(Dense(3), Relu(), Dense(2))
    _, params = model.init(jax.random.key(0), (-1, 5))
    per = microbatch.gradient_pass_bytes(model, params, (5,), method=method)
    largest = microbatch.largest_intermediate_bytes(model, params, (5,), gradient=True, method=method)
    assert per > largest > 0
    monkeypatch.setattr(microbatch, "AUTO_UNROLL_BYTES", 3 * per)
    assert microbatch._plan(model, "auto", params, jnp.zeros((10, 5)), gradient=True,
                            method=method) == (3, 3, 2, 2)
    # The calls go by the largest array instead.
    monkeypatch.setattr(microbatch, "AUTO_CHUNK_BYTES", 4 * largest)
    step = train_step(model, losses.mse(), optax.sgd(0.1), method, microbatch="auto")
    assert step.chunks(params, jnp.zeros((10, 5))) == (4, 3, 3)


@pytest.mark.parametrize("method", ["autodiff", "manual"])
def test_auto_calls_hold_unrolled_chunks(monkeypatch, problem, method):
    # "auto": calls whose largest array fits AUTO_CHUNK_BYTES, and inside each call (or the
    # one program) chunks of AUTO_UNROLL_BYTES, unrolled; both equal the whole step.
    model, params, x, labels, _ = problem
    per = microbatch.gradient_pass_bytes(model, params, x.shape[1:], method=method)
    largest = microbatch.largest_intermediate_bytes(model, params, x.shape[1:], gradient=True,
                                                    method=method)
    monkeypatch.setattr(microbatch, "AUTO_CHUNK_BYTES", 5 * largest)
    monkeypatch.setattr(microbatch, "AUTO_UNROLL_BYTES", 2 * per)
    loss, opt = losses.softmax_cross_entropy(), optax.sgd(0.1)
    want = train_step(model, loss, opt, method, microbatch=None, donate=False)(
        params, opt.init(params), x, labels)
    step = train_step(model, loss, opt, method, microbatch="auto", donate=False)
    assert step.chunks(params, x) == (5, 5)                            # the calls
    assert step.form(params, x) == "chunk by chunk" and step.form(params, x[:5]) == "one program"
    sizes = []
    real = microbatch._split
    monkeypatch.setattr(microbatch, "_split", lambda a, s: sizes.append(s) or real(a, s))
    for got in (step.accumulate(params, opt.init(params), x, labels),
                step.jitted(params, opt.init(params), x, labels)):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), got, want)
    assert (2, 2, 1) in sizes                                          # each call's 5, unrolled
    assert (2, 2, 2, 2, 2) in sizes                                    # the one program's 10


def test_a_lifted_plain_model_splits_like_a_plain_one():
    # `stateful` of a plain model has no state and draws no key: its step may split the batch.
    from jaxnn import stateful
    plain = small_convnet()
    lifted = stateful(plain)
    assert lifted.lifted is plain and microbatch.check_splittable(lifted, "auto") is True
    assert microbatch.check_splittable(lifted, 4) is True
    _, params, state = lifted.init(jax.random.key(0), (-1, 8, 8, 1))
    x = jax.random.normal(jax.random.key(1), (BATCH, 8, 8, 1), jnp.float32)
    labels = jnp.arange(BATCH) % 4
    loss, opt = losses.softmax_cross_entropy(), optax.sgd(0.1)
    want = train_step(plain, loss, opt, microbatch=None, donate=False)(params, opt.init(params), x, labels)
    for chunk in (4, "auto"):
        step = train_step(lifted, loss, opt, microbatch=chunk, donate=False)
        args = (params, state, opt.init(params), x, labels, None)
        for p, s, o, m in (step(*args), jax.jit(step)(*args), step.lower(*args).compile()(*args)):
            assert s == ()
            jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6),
                         (p, o, m), want)
    assert step.form(params, x) == "one program"     # "auto" at these sizes: one call


@pytest.mark.parametrize("method", ["autodiff", "manual"])
@pytest.mark.parametrize("loss_name", ["softmax_cross_entropy", "sum_of_squares", "mse"])
def test_value_and_grad_matches_plain(problem, method, loss_name):
    model, params, x, labels, targets = problem
    loss = getattr(losses, loss_name)()
    y = labels if loss_name == "softmax_cross_entropy" else targets
    want_value, want_grads = backprop.value_and_grad(model, loss, method)(params, x, y)
    chunked = jax.jit(microbatch.value_and_grad(model, loss, method, microbatch=4))
    value, grads = chunked(params, x, y)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), grads, want_grads)


def test_value_and_grad_methods_agree_on_auto(problem):
    model, params, x, labels, _ = problem
    loss = losses.softmax_cross_entropy()
    a = jax.jit(microbatch.value_and_grad(model, loss, "autodiff", "auto"))(params, x, labels)
    m = jax.jit(microbatch.value_and_grad(model, loss, "manual", "auto"))(params, x, labels)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=2e-5, atol=1e-6), a, m)


@pytest.mark.parametrize("chunk", [None, "auto", 3, 4, BATCH])
def test_apply_matches_plain(problem, chunk):
    model, params, x, _, _ = problem
    got = jax.jit(microbatch.apply(model, chunk))(params, x)
    np.testing.assert_allclose(got, model.apply(params, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["autodiff", "manual"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_accumulating_step_matches_whole_step(problem, method, reduction):
    model, params, x, labels, _ = problem
    loss, opt = losses.softmax_cross_entropy(reduction), optax.sgd(0.1)
    want = train_step(model, loss, opt, method, microbatch=None, donate=False)(
        params, opt.init(params), x, labels)
    got = microbatch.accumulating_step(model, loss, opt, method, 4, donate=False)(
        params, opt.init(params), x, labels)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), got, want)


def test_stateful_models_are_left_whole():
    model = serial(Dense(2), BatchNorm())  # stateful: per-chunk batch statistics would differ
    assert microbatch.check_splittable(small_convnet(), "auto") is True
    assert microbatch.check_splittable(small_convnet(), None) is False
    assert microbatch.check_splittable(model, "auto") is False
    assert microbatch.check_splittable(model, None) is False
    with pytest.raises(ValueError, match="micro-batching a stateful model"):
        microbatch.check_splittable(model, 64)
    with pytest.raises(ValueError, match="takes a plain"):
        microbatch.accumulating_step(model, losses.mse(), optax.sgd(0.1))


@pytest.mark.parametrize("method", ["autodiff", "manual"])
def test_train_step_accumulates_concrete_batches_and_unrolls_traced_ones(problem, method):
    # The hand-written rule stores conv1's windows (more than its forward holds): a concrete
    # batch of 3 chunks runs chunk by chunk. Reverse mode stores nothing larger: one program.
    model, params, x, labels, _ = problem
    loss, opt = losses.softmax_cross_entropy(), optax.sgd(0.1, momentum=0.9)
    want = train_step(model, loss, opt, method, microbatch=None, donate=False)(
        params, opt.init(params), x, labels)
    step = train_step(model, loss, opt, method, microbatch=4, donate=False)
    assert step.chunks(params, x) == (4, 3, 3) and step.chunks(params, x[:4]) == (4,)
    by_chunk = method == "manual"
    assert step.form(params, x) == ("chunk by chunk" if by_chunk else "one program")
    assert step.form(params, x[:4]) == "one program"
    calls = []
    accumulate = step.accumulate
    step.accumulate = lambda *a: calls.append(1) or accumulate(*a)
    eager = step(params, opt.init(params), x, labels)
    assert calls == ([1] if by_chunk else [])
    calls.clear()
    traced = jax.jit(step)(params, opt.init(params), x, labels)
    assert calls == []                                    # under the caller's jit: one program
    lowered = step.lower(params, opt.init(params), x, labels).compile()(params, opt.init(params), x, labels)
    for got in (eager, traced, lowered):
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), got, want)
    step(params, opt.init(params), x[:4], labels[:4])
    assert calls == []                                    # one chunk: the one compiled step
