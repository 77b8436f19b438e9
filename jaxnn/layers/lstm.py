"""The LSTM over a time axis, with backprop through time written out as a reverse `lax.scan`.

x (N, T, in) -> h (N, T, H), from h_0 = c_0 = 0. With z_t = x_t U + h_{t−1} W + b split into
the four gates (input, forget, cell, output):

    i = σ(z_i)   f = σ(z_f)   g = tanh(z_g)   o = σ(z_o)
    c_t = f ⊙ c_{t−1} + i ⊙ g          h_t = o ⊙ tanh(c_t)

Backward, with dh = dC/dh_t (output at t plus δh from step t+1) and δc from step t+1:

    do = dh ⊙ tanh(c_t)                dc = δc + dh ⊙ o ⊙ (1 − tanh² c_t)
    di = dc ⊙ g   df = dc ⊙ c_{t−1}   dg = dc ⊙ i
    dz = [di i(1−i), df f(1−f), dg (1−g²), do o(1−o)]
    δh_{t−1} = dz Wᵀ                   δc_{t−1} = dc ⊙ f
    dC/dW = Σ_t h_{t−1}ᵀ dz_t   dC/dU = Σ_t x_tᵀ dz_t   dC/db = Σ_t dz_t   dC/dx_t = dz_t Uᵀ

Residuals: the gate activations (T, N, 4H), c_t and h_t (T, N, H), and x.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnn.core import Layer, check_input, check_shape, make_layer, positive_ints
from jaxnn.layers._checks import finite_real


class LSTMParams(NamedTuple):
    w_in: jax.Array  # (in, 4H), gates in the order i, f, g, o
    w_rec: jax.Array  # (H, 4H)
    b: jax.Array  # (4H,)


def LSTM(hidden: int, *, forget_bias: float = 1.0, dtype=jnp.float32) -> Layer:
    """A long short-term memory layer (Hochreiter & Schmidhuber 1997; forget gate of Gers et
    al. 2000): x (N, T, in) -> h (N, T, hidden). The forget-gate bias starts at `forget_bias`."""
    (H,) = positive_ints("LSTM", "hidden", hidden, 1)
    forget_bias = finite_real("LSTM", "forget_bias", forget_bias)

    def init(key, input_shape):
        shape = check_shape("LSTM", input_shape, ndim=3)
        k_in, k_rec = jax.random.split(key)
        w_in = jax.random.normal(k_in, (shape[-1], 4 * H), dtype) / float(np.sqrt(shape[-1]))
        w_rec = jax.random.normal(k_rec, (H, 4 * H), dtype) / float(np.sqrt(H))
        b = jnp.zeros(4 * H, dtype).at[H:2 * H].set(forget_bias)
        return (*shape[:2], H), LSTMParams(w_in, w_rec, b)

    def forward(params, x):
        check_input("LSTM", x, ndim=3, trailing=(params.w_in.shape[0],), dtype=params.w_in.dtype)
        drive = jnp.swapaxes(x, 0, 1) @ params.w_in + params.b[None, None, :]

        def step(carry, d):
            h, c = carry
            z = d + h @ params.w_rec
            i, f, o = (jax.nn.sigmoid(z[:, k * H:(k + 1) * H]) for k in (0, 1, 3))
            g = jnp.tanh(z[:, 2 * H:3 * H])
            c = f * c + i * g
            h = o * jnp.tanh(c)
            return (h, c), (h, c, jnp.concatenate([i, f, g, o], axis=-1))

        zero = jnp.zeros((x.shape[0], H), x.dtype)
        hs, cs, gates = lax.scan(step, (zero, zero), drive)[1]
        return jnp.swapaxes(hs, 0, 1), (hs, cs, gates, x)

    def backward(params, residuals, dy):
        hs, cs, gates, x = residuals
        c_prev = jnp.concatenate([jnp.zeros_like(cs[:1]), cs[:-1]], axis=0)

        def step(carry, inputs):
            dh_next, dc_next = carry
            dh_out, c, cp, gate = inputs
            i, f, g, o = (gate[:, k * H:(k + 1) * H] for k in range(4))
            dh = dh_out + dh_next
            tc = jnp.tanh(c)
            dc = dc_next + dh * o * (1 - tc * tc)
            dz = jnp.concatenate([dc * g * i * (1 - i), dc * cp * f * (1 - f),
                                  dc * i * (1 - g * g), dh * tc * o * (1 - o)], axis=-1)
            return (dz @ params.w_rec.T, dc * f), dz

        zero = jnp.zeros_like(hs[0])
        dz = lax.scan(step, (zero, zero), (jnp.swapaxes(dy, 0, 1), cs, c_prev, gates),
                      reverse=True)[1]
        h_prev = jnp.concatenate([jnp.zeros_like(hs[:1]), hs[:-1]], axis=0)
        dparams = LSTMParams(jnp.einsum("nti,tng->ig", x, dz), jnp.einsum("tnh,tng->hg", h_prev, dz),
                             dz.sum((0, 1)))
        return dparams, jnp.swapaxes(dz @ params.w_in.T, 0, 1)

    return make_layer("LSTM", init, forward, backward)


__all__ = ["LSTM", "LSTMParams"]
