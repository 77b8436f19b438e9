"""bf16 compute with float32 master params (jaxnn.train.precision)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn
from jaxnn import losses
from jaxnn.layers import BatchNorm, Conv2D, Dense, Flatten, MaxPool, Relu
from jaxnn.train import sharding
from jaxnn.train.precision import mixed_precision


def small_model():
    return jaxnn.serial(Conv2D(4, 3, padding="SAME"), Relu(), MaxPool(2), Flatten(), Dense(10))


def test_bf16_forward_and_both_backwards_agree_in_float32_dtypes(key):
    model, model16 = small_model(), mixed_precision(small_model(), "bfloat16")
    _, params, state = model16.init(key, (-1, 8, 8, 1))
    x = jax.random.normal(jax.random.key(1), (4, 8, 8, 1), jnp.float32)
    dy = jax.random.normal(jax.random.key(2), (4, 10), jnp.float32)

    @jax.jit
    def both(params, x, dy):
        y16, res, new_state = model16.forward(params, state, x, train=True)
        manual = model16.backward(params, res, dy)
        _, vjp = jax.vjp(model16, params, x)
        return y16, jax.tree.leaves(res[0])[0].dtype == jnp.bfloat16, manual, vjp(dy), new_state

    y16, res_is_bf16, (dparams, dx), (want_dparams, want_dx), new_state = both(params, x, dy)
    assert y16.dtype == jnp.float32 and bool(res_is_bf16) and new_state == ()
    np.testing.assert_allclose(y16, model(params, x), rtol=5e-2, atol=5e-2)
    assert dx.dtype == jnp.float32
    assert all(d.dtype == jnp.float32 for d in jax.tree.leaves(dparams))
    # bf16 keeps 8 bits of mantissa, and the two methods take conv1's weight gradient by
    # different formulations (the windows' product, a convolution of x with dy): their bf16
    # sums of 256 products differ by up to 9 % of the largest entry here. A wrong derivative
    # (sign, factor, transposed axes) is off by the order of the entries themselves.
    for got, want in zip(jax.tree.leaves((dparams, dx)), jax.tree.leaves((want_dparams, want_dx))):
        np.testing.assert_allclose(got, want, rtol=0, atol=0.15 * float(np.abs(want).max()))


def test_a_model_with_state_keeps_float32_state():
    model16 = mixed_precision(jaxnn.serial(Dense(6), BatchNorm(), Dense(3)), "bfloat16")
    _, params, state = model16.init(jax.random.key(0), (-1, 4))
    y, new_state = model16.apply(params, state, jnp.ones((5, 4), jnp.float32), train=True)
    assert y.dtype == jnp.float32
    assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(new_state))
    assert jax.tree.structure(new_state) == jax.tree.structure(state)


def test_bf16_train_step_keeps_float32_params(key):
    model, loss = small_model(), losses.softmax_cross_entropy()
    _, params, _ = model.init(key, (-1, 8, 8, 1))
    train = sharding.train_step(model, loss, optax.sgd(0.1), "manual", mesh=sharding.make_mesh(1),
                                compute_dtype="bfloat16")
    x = jax.random.normal(jax.random.key(1), (8, 8, 8, 1), jnp.float32)
    y = jnp.arange(8, dtype=jnp.int32)
    ts, metrics = train.step(train.init(params), (x, y), jax.random.key(2))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(ts.params))
    assert np.isfinite(float(metrics["loss"]))


def test_bad_compute_dtype_names_the_wrapper():
    with pytest.raises(jaxnn.LayerError, match="mixed_precision: compute dtype must be one of"):
        mixed_precision(small_model(), "fp8")
    with pytest.raises(jaxnn.LayerTypeError, match="mixed_precision: compute dtype must be"):
        mixed_precision(small_model(), jnp.float16)
