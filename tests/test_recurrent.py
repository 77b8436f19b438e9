"""Recurrent layers (RateRNN, RNN, LSTM): forward against an independent NumPy loop, Dale's law
and the connectivity mask under training, the noise key, and errors naming the layer.

Their hand-written BPTT against jax.vjp (float32, float64) and finite differences: the rows
rnn, lstm, rate_* of jaxnn.check.cases, run by tests/test_layers.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.random import threefry_2x32

from jaxnn.backprop import manual_vjp
from jaxnn.check.cases import select, setup
from jaxnn.core import LayerError, LayerTypeError, fixed_state
from jaxnn.layers.lstm import LSTM
from jaxnn.layers.recurrent import (
    RateRNN,
    connectivity_mask,
    dale_signs,
    effective_weights,
    rate_scan,
    rate_scan_backward,
    recurrent_noise,
    threefry2x32,
)

SHAPE = (2, 6, 3)  # (N, T, in)


def _row(case_id):
    s = setup(select([case_id])[0])
    return s.layer, s.params, s.x


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


@pytest.mark.parametrize("case_id,alpha,dale", [
    ("rnn", 1.0, False), ("rate_rates", 0.2, False), ("rate_dale_sparse", 0.2, True),
])
def test_forward_matches_numpy_loop(case_id, alpha, dale):
    layer, params, x = _row(case_id)
    mask = connectivity_mask(10, 0.5, 0) if dale else None
    signs = dale_signs(10, 0.8) if dale else None
    want = _np_rate(params, np.asarray(x, np.float64), alpha, mask, signs)
    np.testing.assert_allclose(layer(params, x), want, rtol=1e-4, atol=1e-5)


def test_lstm_forward_matches_numpy_loop():
    layer, params, x = _row("lstm")
    np.testing.assert_allclose(layer(params, x), _np_lstm(params, np.asarray(x, np.float64)),
                               rtol=1e-4, atol=1e-5)


def test_dale_signs_and_mask_survive_training_steps():
    layer = RateRNN(10, 2, dale=True, connectivity=0.4)
    _, params, _ = layer.init(jax.random.key(0), SHAPE)
    x = jax.random.normal(jax.random.key(1), SHAPE)
    mask = connectivity_mask(10, 0.4, 0)
    grad = jax.jit(lambda p: manual_vjp(layer, p, x, jnp.ones((2, 6, 2)))[1])
    for _ in range(3):
        dparams = grad(params)
        assert np.all(np.asarray(dparams.w_rec)[mask == 0] == 0)
        params = jax.tree.map(lambda p, d: p - 0.5 * d, params, dparams)
    W = np.asarray(effective_weights(params.w_rec, mask, dale_signs(10, 0.8)))
    assert np.all(W[:8] >= 0) and np.all(W[8:] <= 0) and np.all(W[mask == 0] == 0)


def test_noise_needs_a_key_in_training_and_is_drawn_from_it():
    layer = RateRNN(6, 2, noise=0.5)
    _, params, state = layer.init(jax.random.key(0), SHAPE)
    assert state == ()
    x = jnp.ones(SHAPE)
    with pytest.raises(LayerError, match="RateRNN: recurrent noise needs a key"):
        layer(params, x, train=True)
    quiet = layer(params, x)
    a = layer(params, x, key=jax.random.key(1), train=True)
    b = layer(params, x, key=jax.random.key(1), train=True)
    np.testing.assert_array_equal(a, b)
    assert float(jnp.abs(a - quiet).max()) > 1e-3


def test_bad_arguments_name_the_layer():
    with pytest.raises(LayerError, match="RateRNN: connectivity matrix must have shape"):
        RateRNN(5, connectivity=np.ones((4, 4)))
    with pytest.raises(LayerError, match="RateRNN: need tau > 0 and 0 < dt <= tau"):
        RateRNN(5, tau=10.0, dt=20.0)
    layer = RateRNN(5)
    _, params, _ = layer.init(jax.random.key(0), SHAPE)
    with jax.enable_x64(True), pytest.raises(LayerTypeError, match="RateRNN: expected input dtype"):
        layer(params, jnp.ones(SHAPE, jnp.float64))
    with pytest.raises(LayerError, match="LSTM: expected an input of rank 3"):
        LSTM(3).init(jax.random.key(0), (2, 3))


def test_threefry_matches_jax_and_noise_is_the_keys_threefry_stream():
    kd = jnp.array([5, 9], jnp.uint32)
    count = jnp.arange(10, dtype=jnp.uint32)
    np.testing.assert_array_equal(np.concatenate(threefry2x32(kd[0], kd[1], count[:5], count[5:])),
                                  threefry_2x32(kd, count))
    key = jax.random.key(3)
    sub = jax.random.wrap_key_data(jax.random.bits(key, (2,), jnp.uint32), impl="threefry2x32")
    for shape in [(5, 1, 3), (3, 2, 5)]:  # odd and even sizes
        with jax.threefry_partitionable(False):
            want = jax.random.normal(sub, shape, jnp.float32)
        np.testing.assert_array_equal(recurrent_noise(key, shape), want)
    with jax.enable_x64(True):  # the (3, 2, 5) draw, the same in float64
        np.testing.assert_array_equal(recurrent_noise(key, (3, 2, 5), jnp.float64), want.astype(np.float64))
    other = recurrent_noise(jax.random.key(4), (3, 2, 5))
    assert float(jnp.abs(other - want).max()) > 0.5
    big = np.asarray(recurrent_noise(key, (40, 8, 32)))
    assert abs(big.mean()) < 0.03 and abs(big.std() - 1) < 0.03


def test_noisy_forward_adds_the_drawn_noise():
    layer = RateRNN(4, noise=0.3, tau=100.0, dt=25.0)
    _, params, _ = layer.init(jax.random.key(0), (2, 3, 3))
    x = jax.random.normal(jax.random.key(1), (2, 3, 3))
    key = jax.random.key(7)
    xi = np.asarray(recurrent_noise(key, (3, 2, 4)), np.float64) * np.sqrt(2 * 0.25) * 0.3
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    f, want = np.zeros((2, 4)), []
    for t in range(3):
        f = 0.75 * f + 0.25 * np.tanh(f @ p.w_rec + np.asarray(x[:, t], np.float64) @ p.w_in + p.b) + xi[t]
        want.append(f)
    np.testing.assert_allclose(layer(params, x, key=key, train=True), np.stack(want, 1),
                                rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("T", [1, 5])
def test_bptt_equals_vjp_float64_at_short_and_odd_lengths(T):
    with jax.enable_x64(True):
        layer = RateRNN(6, 2, noise=0.2, dale=True, connectivity=0.7, dtype=jnp.float64)
        _, params, _ = layer.init(jax.random.key(0), (3, T, 2))
        x = jax.random.normal(jax.random.key(1), (3, T, 2), jnp.float64)
        dy = jax.random.normal(jax.random.key(2), (3, T, 2), jnp.float64)
        plain = fixed_state(layer, key=jax.random.key(5), train=True)
        y, (want_p, want_x) = jax.jit(lambda p, x, dy: (lambda out: (out[0], out[1](dy)))(
            jax.vjp(plain, p, x)))(params, x, dy)
        got_y, got_p, got_x = jax.jit(lambda p, x, dy: manual_vjp(layer, p, x, dy, key=jax.random.key(5),
                                                                   train=True))(params, x, dy)
        np.testing.assert_allclose(got_y, y, rtol=1e-12, atol=1e-12)
        for got, want in zip(jax.tree.leaves((got_p, got_x)), jax.tree.leaves((want_p, want_x))):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_rate_scan_backward_is_the_vjp_of_rate_scan():
    with jax.enable_x64(True):
        W = jax.random.normal(jax.random.key(0), (5, 5), jnp.float64) * 0.5
        drive = jax.random.normal(jax.random.key(1), (4, 2, 5), jnp.float64)
        g = jax.random.normal(jax.random.key(2), (4, 2, 5), jnp.float64)
        (f, h), vjp = jax.vjp(lambda d: rate_scan(W, d, None, 0.3), drive)
        (want,) = vjp((g, jnp.zeros_like(h)))
        np.testing.assert_allclose(rate_scan_backward(W, h, g, 0.3), want, rtol=1e-12, atol=1e-12)
