"""Recurrent layers over a time axis: the firing-rate network `RateRNN` and the Elman `RNN`.

Inputs are batch-major sequences x: (N, T, in). The rate network integrates, with Euler
steps of dt and α = dt / τ,

    τ df/dt = −f + tanh(W f + U x(t) + b) + noise
    f_t = (1 − α) f_{t−1} + α h_t + √(2α) σ ξ_t,     h_t = tanh(f_{t−1} W + x_t U + b)

from f_0 = 0 (ξ_t standard normal), and returns the rates (N, T, H) or the readout
y_t = f_t V + c (N, T, out). `RNN` is the α = 1, noise-free case: h_t = tanh(h_{t−1} W + x_t U + b).

Backward is backprop through time written out as a reverse `lax.scan`. With g_t = dC/df_t
from the output at t and δ_t = dC/df_t through f_{t+1} (δ_T = 0):

    dpre_t  = (g_t + δ_t) ⊙ α (1 − h_t²)
    δ_{t−1} = (1 − α)(g_t + δ_t) + dpre_t Wᵀ
    dC/dW = Σ_t f_{t−1}ᵀ dpre_t    dC/dU = Σ_t x_tᵀ dpre_t    dC/db = Σ_t dpre_t    dC/dx_t = dpre_t Uᵀ

Only the H×H product sits inside the reverse scan; the weight gradients are one contraction
over all steps afterwards. The noise is additive, so it enters the backward only through
the stored rates. Residuals: the rates f_1..f_T and h_1..h_T, time-major (T, N, H), and x.

Weight layout: W[i, j] is the synapse from unit i to unit j. A fixed connectivity mask M
(dense, sparse random, or a user's adjacency matrix) and Dale's law (units 0..n_E−1
excitatory, the rest inhibitory, sign s_i per presynaptic unit) act through

    W = M ⊙ w                      (no Dale's law)
    W = diag(s) (M ⊙ relu(w))      (Dale's law: every outgoing weight keeps its unit's sign)

so dC/dw = M ⊙ dC/dW, or M ⊙ diag(s) dC/dW ⊙ [w > 0].
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnn.core import Layer, check_input, check_shape, fail, make_stateful_layer, positive_ints
from jaxnn.layers._checks import finite_real


class RateParams(NamedTuple):
    w_rec: jax.Array  # (H, H) raw recurrent weights w (W = M ⊙ w, or Dale's form)
    w_in: jax.Array  # (in, H)
    b: jax.Array  # (H,)
    w_out: Any = ()  # (H, out) readout V, or () for rates out
    b_out: Any = ()  # (out,)


def connectivity_mask(hidden: int, connectivity: Any = None, seed: int = 0) -> np.ndarray | None:
    """The fixed (H, H) 0/1 mask: None (all-to-all), a density p in (0, 1] (each synapse
    kept with probability p, drawn from `seed`), or an adjacency matrix (H, H), nonzero = kept."""
    if connectivity is None:
        return None
    if isinstance(connectivity, (int, float)) and not isinstance(connectivity, bool):
        connectivity = finite_real("RateRNN", "connectivity", connectivity)
        if not 0.0 < connectivity <= 1.0:
            fail("RateRNN", f"connectivity density must be in (0, 1], got {connectivity}")
        return (np.random.default_rng(seed).random((hidden, hidden)) < connectivity).astype(np.float32)
    mask = np.asarray(connectivity)
    if mask.shape != (hidden, hidden):
        fail("RateRNN", f"connectivity matrix must have shape {(hidden, hidden)}, got {mask.shape}")
    return (mask != 0).astype(np.float32)


def dale_signs(hidden: int, exc_fraction: float) -> np.ndarray:
    """+1 for the first round(exc_fraction·H) units (excitatory), −1 for the rest."""
    n_exc = int(round(exc_fraction * hidden))
    if not 0 < n_exc < hidden:
        fail("RateRNN", f"exc_fraction={exc_fraction} leaves no excitatory or no inhibitory unit "
                        f"among {hidden}")
    return np.where(np.arange(hidden) < n_exc, 1.0, -1.0).astype(np.float32)


def effective_weights(w, mask, signs):
    """W from the raw weights w (see the module docstring)."""
    if signs is not None:
        w = jax.nn.relu(w) * jnp.asarray(signs, w.dtype)[:, None]
    return w if mask is None else w * jnp.asarray(mask, w.dtype)


def effective_weights_backward(w, mask, signs, dW):
    """dC/dw from dC/dW."""
    if mask is not None:
        dW = dW * jnp.asarray(mask, w.dtype)
    if signs is not None:
        dW = dW * jnp.asarray(signs, w.dtype)[:, None] * (w > 0).astype(w.dtype)
    return dW


def rate_scan(W, drive, noise, alpha):
    """The Euler loop: drive (T, N, H) = x_t U + b, noise (T, N, H) or None.
    Returns (f, h), each (T, N, H)."""
    def step(f, inputs):
        d, n = inputs
        h = jnp.tanh(f @ W + d)
        f = (1 - alpha) * f + alpha * h
        if n is not None:
            f = f + n
        return f, (f, h)

    f0 = jnp.zeros(drive.shape[1:], drive.dtype)
    return lax.scan(step, f0, (drive, noise))[1]


def rate_scan_backward(W, h, g, alpha):
    """The reverse scan of BPTT: g (T, N, H) = dC/df_t from the outputs -> dpre (T, N, H)."""
    def step(delta, inputs):
        g_t, h_t = inputs
        total = g_t + delta
        dpre = total * (alpha * (1 - h_t * h_t))
        return (1 - alpha) * total + dpre @ W.T, dpre

    return lax.scan(step, jnp.zeros_like(g[0]), (g, h), reverse=True)[1]


def _rate_layer(name, hidden, *, alpha, readout, noise, mask, signs, rec_gain, dtype):
    """The shared forward/backward of `RateRNN` and `RNN` (see the module docstring)."""
    p_conn = 1.0 if mask is None else max(float(mask.mean()), 1.0 / hidden)

    def init(key, input_shape):
        shape = check_shape(name, input_shape, ndim=3)
        k_rec, k_in, k_out = jax.random.split(key, 3)
        z = jax.random.normal(k_rec, (hidden, hidden), dtype)
        if signs is None:
            w_rec = z * float(rec_gain / np.sqrt(hidden * p_conn))
        else:  # |z| scaled so inputs balance (E mean = I mean) and the spectral radius ≈ rec_gain
            n_exc = int((signs > 0).sum())
            ratio = n_exc / (hidden - n_exc)
            scale = np.where(signs > 0, 1.0, ratio)[:, None]
            second = (n_exc + (hidden - n_exc) * ratio ** 2) / hidden
            w_rec = jnp.abs(z) * jnp.asarray(scale * rec_gain / np.sqrt(hidden * p_conn * second),
                                             dtype)
        w_in = jax.random.normal(k_in, (shape[-1], hidden), dtype) / float(np.sqrt(shape[-1]))
        params = RateParams(w_rec, w_in, jnp.zeros(hidden, dtype))
        if readout is None:
            return (*shape[:2], hidden), params
        w_out = jax.random.normal(k_out, (hidden, readout), dtype) / float(np.sqrt(hidden))
        return (*shape[:2], readout), params._replace(w_out=w_out, b_out=jnp.zeros(readout, dtype))

    def run(params, x, key):
        check_input(name, x, ndim=3, trailing=(params.w_in.shape[0],), dtype=params.w_in.dtype)
        drive = jnp.swapaxes(x, 0, 1) @ params.w_in + params.b[None, None, :]
        xi = None
        if key is not None:
            # drawn in float32 whatever the dtype: the same key gives the same noise
            xi = (jax.random.normal(key, drive.shape, jnp.float32).astype(drive.dtype)
                  * float(np.sqrt(2 * alpha) * noise))
        f, h = rate_scan(effective_weights(params.w_rec, mask, signs), drive, xi, alpha)
        rates = jnp.swapaxes(f, 0, 1)
        y = rates if readout is None else rates @ params.w_out + params.b_out[None, None, :]
        return y, (f, h, x)

    def backward(params, residuals, dy):
        f, h, x = residuals
        dparams = {}
        if readout is None:
            g = jnp.swapaxes(dy, 0, 1)
        else:
            dparams["w_out"] = jnp.einsum("tnh,nto->ho", f, dy)
            dparams["b_out"] = dy.sum((0, 1))
            g = jnp.swapaxes(dy @ params.w_out.T, 0, 1)
        W = effective_weights(params.w_rec, mask, signs)
        dpre = rate_scan_backward(W, h, g, alpha)
        f_prev = jnp.concatenate([jnp.zeros_like(f[:1]), f[:-1]], axis=0)
        dW = jnp.einsum("tnh,tnk->hk", f_prev, dpre)
        dparams["w_rec"] = effective_weights_backward(params.w_rec, mask, signs, dW)
        dparams["w_in"] = jnp.einsum("nti,tnh->ih", x, dpre)
        dparams["b"] = dpre.sum((0, 1))
        dx = jnp.swapaxes(dpre @ params.w_in.T, 0, 1)
        return RateParams(**dparams), dx

    def init_full(key, input_shape):
        return (*init(key, input_shape), ())

    def forward(params, state, x, *, key=None, train):
        if noise > 0.0 and train and key is None:
            fail(name, "recurrent noise needs a key when train=True")
        y, residuals = run(params, x, key if noise > 0.0 else None)
        return y, residuals, state

    return make_stateful_layer(name, init_full, forward, backward)


def RateRNN(hidden: int, readout: int | None = None, *, tau: float = 100.0, dt: float = 20.0,
            noise: float = 0.0, dale: bool = False, exc_fraction: float = 0.8,
            connectivity: Any = None, mask_seed: int = 0, rec_gain: float = 1.0,
            dtype=jnp.float32) -> Layer:
    """A firing-rate network: x (N, T, in) -> rates f (N, T, hidden), or y = f V + c
    (N, T, readout) when `readout` is given (see the module docstring for the equations).

    tau, dt: time constant and Euler step (same unit, e.g. ms); α = dt / tau ∈ (0, 1].
    noise: σ of the recurrent noise (state `()` either way). With noise > 0, noise is drawn
        whenever a key is given (train or eval, so noisy trials can be evaluated), and a key is
        required when train=True; with noise = 0 the key is ignored. The same key gives the
        same noise in float32 and float64.
    dale: fix each unit's outgoing sign, the first round(exc_fraction·hidden) excitatory.
    connectivity: None, a density in (0, 1] (random mask from `mask_seed`) or an (H, H) adjacency.
    rec_gain: spectral radius of the initial W (≈; for the masked/Dale'd random matrix).
    """
    (hidden,) = positive_ints("RateRNN", "hidden", hidden, 1)
    if readout is not None:
        (readout,) = positive_ints("RateRNN", "readout", readout, 1)
    tau, dt = finite_real("RateRNN", "tau", tau), finite_real("RateRNN", "dt", dt)
    noise = finite_real("RateRNN", "noise", noise)
    exc_fraction = finite_real("RateRNN", "exc_fraction", exc_fraction)
    rec_gain = finite_real("RateRNN", "rec_gain", rec_gain)
    if not (tau > 0 and 0 < dt <= tau):
        fail("RateRNN", f"need tau > 0 and 0 < dt <= tau, got tau={tau}, dt={dt}")
    if noise < 0:
        fail("RateRNN", f"noise must be >= 0, got {noise}")
    mask = connectivity_mask(hidden, connectivity, mask_seed)
    signs = dale_signs(hidden, exc_fraction) if dale else None
    return _rate_layer("RateRNN", hidden, alpha=dt / tau, readout=readout, noise=float(noise),
                       mask=mask, signs=signs, rec_gain=rec_gain, dtype=dtype)


def RNN(hidden: int, *, dtype=jnp.float32) -> Layer:
    """The discrete-time (Elman) cell h_t = tanh(h_{t−1} W + x_t U + b), h_0 = 0:
    x (N, T, in) -> h (N, T, hidden). Params `RateParams` without readout."""
    (hidden,) = positive_ints("RNN", "hidden", hidden, 1)
    return _rate_layer("RNN", hidden, alpha=1.0, readout=None, noise=0.0, mask=None, signs=None,
                       rec_gain=1.0, dtype=dtype)


__all__ = ["RNN", "RateParams", "RateRNN", "connectivity_mask", "dale_signs", "effective_weights",
           "effective_weights_backward", "rate_scan",
           "rate_scan_backward"]
