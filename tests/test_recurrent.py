"""Recurrent layers (RateRNN, RNN, LSTM): hand-written BPTT against jax.vjp (f32, f64), against
f64 finite differences through `as_custom_vjp`, and forward against an independent NumPy loop."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxnn as nn
from jaxnn.backprop import as_custom_vjp
from jaxnn.core import LayerError, LayerTypeError
from jaxnn.layers.lstm import LSTM
from jaxnn.layers.recurrent import RNN, RateRNN, effective_weights, connectivity_mask, dale_signs

SHAPE = (2, 6, 3)  # (N, T, in)
ADJACENCY = (np.arange(25).reshape(5, 5) % 3 != 0).astype(np.int32)
CASES = {
    "rnn": lambda: RNN(5),
    "lstm": lambda: LSTM(4),
    "rate_rates": lambda: RateRNN(5, tau=100.0, dt=20.0),
    "rate_dale_sparse": lambda: RateRNN(10, 3, dale=True, connectivity=0.5, rec_gain=1.5),
    "rate_adjacency_noise": lambda: RateRNN(5, 2, dt=10.0, noise=0.1, connectivity=ADJACENCY),
}
TOL = {jnp.float32: 2e-5, jnp.float64: 1e-11}
NOISE_KEY = jax.random.key(7)


def _apply_fn(layer):
    """params, x -> y, with a fixed noise key for the stateful (noisy) layer."""
    if nn.is_stateful(layer):
        return lambda p, x: layer.apply(p, (), x, key=NOISE_KEY, train=True)[0]
    return layer.apply


def _forward_fn(layer):
    if nn.is_stateful(layer):
        return lambda p, x: layer.forward(p, (), x, key=NOISE_KEY, train=True)[:2]
    return layer.forward


def _setup(name, dtype):
    layer = CASES[name]()
    k_init, k_x, k_dy = jax.random.split(jax.random.key(1), 3)
    out_shape, params, *_ = layer.init(k_init, SHAPE)
    params = jax.tree.map(lambda a: a.astype(dtype), params)
    x = jax.random.normal(k_x, SHAPE, dtype)
    dy = jax.random.normal(k_dy, out_shape, dtype)
    return layer, params, x, dy


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("name", list(CASES))
def test_backward_matches_vjp(name, dtype):
    with jax.enable_x64(dtype == jnp.float64):
        layer, params, x, dy = _setup(name, dtype)

        @jax.jit
        def both(params, x, dy):
            y, vjp = jax.vjp(_apply_fn(layer), params, x)
            y_manual, residuals = _forward_fn(layer)(params, x)
            return y, y_manual, vjp(dy), layer.backward(params, residuals, dy)

        y, y_manual, want, got = both(params, x, dy)
        assert y.shape == dy.shape and y.dtype == dtype
        np.testing.assert_array_equal(y_manual, y)
        chex.assert_trees_all_equal_shapes_and_dtypes(got[0], params)
        chex.assert_trees_all_close(got, want, rtol=TOL[dtype], atol=TOL[dtype])
        assert float(jnp.abs(got[1]).max()) > 0


@pytest.mark.parametrize("name", ["lstm", "rate_dale_sparse", "rate_adjacency_noise"])
def test_manual_backward_matches_finite_differences(name):
    with jax.enable_x64(True):
        layer, params, x, _ = _setup(name, jnp.float64)
        if nn.is_stateful(layer):
            layer = _as_plain(layer)
        check_grads(as_custom_vjp(layer).apply, (params, x), order=1, modes=["rev"],
                    atol=1e-6, rtol=1e-6)


def _as_plain(layer):
    """The noisy layer with the noise key fixed, as a plain Layer (so as_custom_vjp applies)."""
    return nn.make_layer(layer.name, lambda k, s: layer.init(k, s)[:2], _forward_fn(layer),
                         layer.backward)


def _np_rate(params, x, alpha, mask=None, signs=None):
    """An independent NumPy Euler loop in float64."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    W = p.w_rec
    if signs is not None:
        W = np.maximum(W, 0) * signs[:, None]
    if mask is not None:
        W = W * mask
    f = np.zeros((x.shape[0], W.shape[0]))
    out = []
    for t in range(x.shape[1]):
        f = (1 - alpha) * f + alpha * np.tanh(f @ W + x[:, t] @ p.w_in + p.b)
        out.append(f @ p.w_out + p.b_out if len(p.w_out) else f)
    return np.stack(out, 1)


def _np_lstm(p, x):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)
    H = p.w_rec.shape[0]
    h = c = np.zeros((x.shape[0], H))
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    out = []
    for t in range(x.shape[1]):
        z = x[:, t] @ p.w_in + h @ p.w_rec + p.b
        i, f, g, o = sig(z[:, :H]), sig(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sig(z[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        out.append(h)
    return np.stack(out, 1)


@pytest.mark.parametrize("name,alpha,mask,signs", [
    ("rnn", 1.0, None, None),
    ("rate_rates", 0.2, None, None),
    ("rate_dale_sparse", 0.2, "random", "dale"),
])
def test_forward_matches_numpy_loop(name, alpha, mask, signs):
    layer, params, x, _ = _setup(name, jnp.float32)
    if isinstance(mask, str):
        mask = connectivity_mask(10, 0.5, 0)
    signs = dale_signs(10, 0.8) if signs else None
    want = _np_rate(params, np.asarray(x, np.float64), alpha, mask, signs)
    np.testing.assert_allclose(layer.apply(params, x), want, rtol=1e-4, atol=1e-5)


def test_lstm_forward_matches_numpy_loop():
    layer, params, x, _ = _setup("lstm", jnp.float32)
    np.testing.assert_allclose(layer.apply(params, x), _np_lstm(params, np.asarray(x, np.float64)),
                               rtol=1e-4, atol=1e-5)


def test_dale_signs_and_mask_survive_training_steps():
    layer = RateRNN(10, 2, dale=True, connectivity=0.4)
    _, params = layer.init(jax.random.key(0), SHAPE)
    x = jax.random.normal(jax.random.key(1), SHAPE)
    mask = connectivity_mask(10, 0.4, 0)
    grad = jax.jit(lambda p: layer.backward(p, layer.forward(p, x)[1], jnp.ones((2, 6, 2)))[0])
    for _ in range(3):
        dparams = grad(params)
        assert np.all(np.asarray(dparams.w_rec)[mask == 0] == 0)
        params = jax.tree.map(lambda p, d: p - 0.5 * d, params, dparams)
    W = np.asarray(effective_weights(params.w_rec, mask, dale_signs(10, 0.8)))
    assert np.all(W[:8] >= 0) and np.all(W[8:] <= 0) and np.all(W[mask == 0] == 0)


def test_noise_needs_a_key_in_training_and_is_drawn_from_it():
    layer = RateRNN(6, 2, noise=0.5)
    assert nn.is_stateful(layer)
    _, params, state = layer.init(jax.random.key(0), SHAPE)
    x = jnp.ones(SHAPE)
    with pytest.raises(LayerError, match="RateRNN: recurrent noise needs a key"):
        layer.apply(params, state, x, train=True)
    quiet, _ = layer.apply(params, state, x, train=False)
    a, _ = layer.apply(params, state, x, key=jax.random.key(1), train=True)
    b, _ = layer.apply(params, state, x, key=jax.random.key(1), train=True)
    np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(a - quiet).max()) > 1e-3


def test_bad_arguments_name_the_layer():
    with pytest.raises(LayerError, match="RateRNN: connectivity matrix must have shape"):
        RateRNN(5, connectivity=np.ones((4, 4)))
    with pytest.raises(LayerError, match="RateRNN: need tau > 0 and 0 < dt <= tau"):
        RateRNN(5, tau=10.0, dt=20.0)
    layer = RateRNN(5)
    _, params = layer.init(jax.random.key(0), SHAPE)
    with jax.enable_x64(True), pytest.raises(LayerTypeError, match="RateRNN: expected input dtype"):
        layer.apply(params, jnp.ones(SHAPE, jnp.float64))
    with pytest.raises(LayerError, match="LSTM: expected an input of rank 3"):
        LSTM(3).init(jax.random.key(0), (2, 3))
