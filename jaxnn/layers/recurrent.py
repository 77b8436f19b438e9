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

Only the H×H product sits inside the reverse scan; the input drive x_t U + b of all steps is
one matrix product before the forward loop, and the weight gradients are one matrix product
each over all steps after the reverse loop (rather than T small ones). The noise ξ of all
steps is one draw before the loop (`recurrent_noise`). The noise is additive, so it enters
the backward only through the stored rates. Residuals: the rates f_1..f_T and h_1..h_T and
the input x, all time-major ((T, N, H) and (T, N, in)).

Weight layout: W[i, j] is the synapse from unit i to unit j. A fixed connectivity mask M
(dense, sparse random, or a user's adjacency matrix) and Dale's law (units 0..n_E−1
excitatory, the rest inhibitory, sign s_i per presynaptic unit) act through

    W = M ⊙ w                      (no Dale's law)
    W = diag(s) (M ⊙ relu(w))      (Dale's law: every outgoing weight keeps its unit's sign)

so dC/dw = M ⊙ dC/dW, or M ⊙ diag(s) dC/dW ⊙ [w > 0].
"""

from __future__ import annotations

from functools import partial
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


_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def threefry2x32(k0, k1, x0, x1) -> tuple[jax.Array, jax.Array]:
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011, the generator behind JAX's default
    keys): keys k0, k1 (uint32 scalars) and counters x0, x1 (uint32 arrays) -> two uint32
    arrays. Written out as array operations so that XLA fuses all 20 rounds into one pass
    over the counters (JAX's own CPU lowering loops over the rounds, a pass per 4 rounds)."""
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(0x1BD11BDA))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = (x1 << jnp.uint32(r)) | (x1 >> jnp.uint32(32 - r))
            x1 = x1 ^ x0
        x0, x1 = x0 + ks[(i + 1) % 3], x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def recurrent_noise(key, shape, dtype=jnp.float32) -> jax.Array:
    """Standard normal ξ of `shape` (e.g. (T, N, H)) from `key`, in one draw.

    Two words drawn from `key` (any key implementation) key a Threefry-2x32 stream over the
    counters 0..size−1 (first half against second half, as `jax.random.bits` lays them out
    with `jax.threefry_partitionable(False)`), mapped to normals as `jax.random.normal` maps
    bits: u uniform in (−1, 1), ξ = √2 erf⁻¹(u). Drawn in float32 and cast to `dtype`, so the
    same key gives the same ξ in float32 and float64."""
    shape = tuple(int(n) for n in shape)
    if np.prod(shape, dtype=np.float64) > 2 ** 32:
        fail("recurrent_noise", f"at most 2**32 numbers per draw (32-bit counters), got shape {shape}")
    return _noise(key, shape, jnp.dtype(dtype))


@partial(jax.jit, static_argnames=("shape", "dtype"))
def _noise(key, shape, dtype):
    size = int(np.prod(shape))
    seed = jax.random.bits(key, (2,), jnp.uint32)
    half = (size + 1) // 2
    count = lax.iota(jnp.uint32, half)
    second = count + jnp.uint32(half)  # an odd size pads the last pair with counter 0
    second = jnp.where(second < size, second, jnp.uint32(0))
    bits = jnp.concatenate(threefry2x32(seed[0], seed[1], count, second))
    bits = bits[:size].reshape(shape)
    one = lax.bitcast_convert_type(bits >> jnp.uint32(9) | jnp.uint32(0x3F800000), jnp.float32)
    lo = np.nextafter(np.float32(-1.0), np.float32(0.0))
    u = jnp.maximum(lo, (one - 1.0) * (1.0 - lo) + lo)
    return (np.float32(np.sqrt(2)) * lax.erf_inv(u)).astype(dtype)


def _rows(a):
    """(..., k) -> (prod(...), k): the leading axes as the rows of one matrix product."""
    return a.reshape(-1, a.shape[-1])


def rate_scan(W, drive, noise, alpha, unroll=1):
    """The Euler loop: drive (T, N, H) = x_t U + b, noise (T, N, H) or None.
    Returns (f, h), each (T, N, H). `unroll` is `lax.scan`'s (steps per loop iteration)."""
    def step(f, inputs):
        d, n = inputs
        h = jnp.tanh(f @ W + d)
        f = (1 - alpha) * f + alpha * h
        if n is not None:
            f = f + n
        return f, (f, h)

    f0 = jnp.zeros(drive.shape[1:], drive.dtype)
    return lax.scan(step, f0, (drive, noise), unroll=unroll)[1]


def _reverse_scan(W, h, g, alpha, unroll=1):
    """The reverse scan of BPTT with its output shifted one step: g (T, N, H) = dC/df_t from
    the outputs -> (dpre_1, q) with q_t = dpre_{t+1} (q_T = 0), so that Σ_t f_{t−1}ᵀ dpre_t
    is one product f_{1..T}ᵀ q of whole arrays. Only dpre_t Wᵀ is inside the loop."""
    Wt = W.T

    def step(carry, inputs):
        delta, dpre_next = carry
        g_t, h_t = inputs
        total = g_t + delta
        dpre = total * (alpha * (1 - h_t * h_t))
        return ((1 - alpha) * total + dpre @ Wt, dpre), dpre_next

    zero = jnp.zeros_like(g[0])
    (_, dpre_first), q = lax.scan(step, (zero, zero), (g, h), reverse=True, unroll=unroll)
    return dpre_first, q


def rate_scan_backward(W, h, g, alpha, unroll=1):
    """The reverse scan of BPTT: g (T, N, H) = dC/df_t from the outputs -> dpre (T, N, H)."""
    dpre_first, q = _reverse_scan(W, h, g, alpha, unroll)
    return jnp.concatenate([dpre_first[None], q[:-1]], axis=0)


def _rate_layer(name, hidden, *, alpha, readout, noise, mask, signs, rec_gain, dtype,
                unroll=1):
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
        n, T = x.shape[:2]
        xt = jnp.swapaxes(x, 0, 1)  # (T, N, in)
        # the input drive of all T steps as one product before the loop
        drive = (_rows(xt) @ params.w_in + params.b[None, :]).reshape(T, n, -1)
        xi = None
        if key is not None:
            xi = recurrent_noise(key, drive.shape, drive.dtype) * float(np.sqrt(2 * alpha) * noise)
        f, h = rate_scan(effective_weights(params.w_rec, mask, signs), drive, xi, alpha, unroll)
        if readout is None:
            y = jnp.swapaxes(f, 0, 1)
        else:
            y = jnp.swapaxes((_rows(f) @ params.w_out + params.b_out[None, :]).reshape(T, n, -1), 0, 1)
        return y, (f, h, xt)

    def backward(params, residuals, dy):
        f, h, xt = residuals
        T, n = f.shape[:2]
        dparams = {}
        if readout is None:
            g = jnp.swapaxes(dy, 0, 1)
        else:
            dy_t = _rows(jnp.swapaxes(dy, 0, 1))  # (T·N, out)
            dparams["w_out"] = _rows(f).T @ dy_t
            dparams["b_out"] = dy_t.sum(0)
            g = (dy_t @ params.w_out.T).reshape(T, n, -1)
        W = effective_weights(params.w_rec, mask, signs)
        dpre_first, q = _reverse_scan(W, h, g, alpha, unroll)
        # the weight gradients as products over all steps at once: with q_t = dpre_{t+1},
        # dC/dW = Σ_t f_{t−1}ᵀ dpre_t = Σ_t f_tᵀ q_t (f_0 = 0), dC/dU = Σ_t x_{t+1}ᵀ q_t + x_1ᵀ dpre_1
        q2 = _rows(q)
        dW = _rows(f).T @ q2
        dparams["w_rec"] = effective_weights_backward(params.w_rec, mask, signs, dW)
        x_next = jnp.concatenate([xt[1:], jnp.zeros_like(xt[:1])], axis=0)
        dparams["w_in"] = _rows(x_next).T @ q2 + xt[0].T @ dpre_first
        dparams["b"] = q2.sum(0) + dpre_first.sum(0)
        dpre = jnp.concatenate([dpre_first[None], q[:-1]], axis=0)  # only for dx
        dx = jnp.swapaxes((_rows(dpre) @ params.w_in.T).reshape(T, n, -1), 0, 1)
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
           "effective_weights_backward", "rate_scan", "recurrent_noise", "threefry2x32",
           "rate_scan_backward"]
