"""A rate network on a fixed wiring diagram (a connectome): chemical synapses with signs and
trainable gains on the existing synapses only, gap junctions, trainable time constants, inputs
onto named sensory neurons and readouts from named neurons; backprop through time written out.

Dynamics. N neurons, potentials v (B, N) and graded activations f = σ(v) = 1 / (1 + e^{−v})
in (0, 1), Euler steps of dt, α_i = dt / τ_i:

    τ_i dv_i/dt = −v_i + Σ_j W_ji f_j + g Σ_j G_ij (f_j − f_i) + Σ_k U_ki x_k(t) + b_i

    z_t = f_{t−1} A + x_t U + b,      A = W − g (diag(d) − G),   d_i = Σ_j G_ij
    v_t = v_{t−1} + α ⊙ (z_t − v_{t−1}) + √(2 α₀) σ ξ_t,        f_t = σ(v_t)

from v_0 = 0 (so f_0 = 1/2), ξ_t standard normal (the whole sequence in one draw,
`jaxnn.layers.recurrent.recurrent_noise`), α₀ = dt / tau the nominal rate (the noise
amplitude is a constant, not a function of the trained τ). W[i, j] is the chemical weight from
presynaptic neuron i onto postsynaptic j (the connectome's `chemical[i, j]` convention); the gap
term is the row-vector form of g Σ_j G_ij (f_j − f_i), which sums to 0 over the neurons for a
symmetric G (a junction moves current between its two neurons, it creates none).

Parametrisation (C = κ · counts, the chemical counts scaled by one constant κ chosen at build
time so that the spectral radius of κ·counts is `rec_gain`; M = [counts > 0] the wiring):

    signs="transmitter" or a (N,) ±1 array:  W = diag(s) (C ⊙ exp(ρ))        s fixed per neuron
    signs="neuron"   (Dale's law, learned):  W = diag(tanh(σ)) (C ⊙ exp(ρ))  one sign per neuron
    signs="synapse"  (free sign per synapse): W = C ⊙ w
    g = κ · gap_gain · exp(γ)         (one gap-junction conductance per count, positive)
    α = sigmoid(θ), so τ = dt / α > dt      (time constants positive, the Euler step stable)
    U = M_in ⊙ exp(u)                 (a channel excites only the sensory neurons it names)

`w_chem` holds ρ or w; C = 0 off the wiring, so W is 0 there whatever the parameter, and the
gradient of the parameter there is 0 (Adam leaves it where it was). "transmitter" makes the
GABAergic neurons inhibitory (McIntire et al. 1993: DD1–6, VD1–13, RMEL/R/D/V, AVL, DVB, RIS)
and every other neuron excitatory — a simplification: glutamate and acetylcholine also act
through inhibitory (chloride) receptors in C. elegans, which "synapse" allows.

Readout: output channel k is the mean activation of the neurons named in readout[k], times
`readout_scale`: y = readout_scale · f R, R (N, K) fixed.

Backward (BPTT). With g_t = dC/df_t from the outputs (dy R^T) and δ_t = dC/dv_t in total:

    δ_t = σ'(v_t) ⊙ (g_t + (α ⊙ δ_{t+1}) Aᵀ) + (1 − α) ⊙ δ_{t+1},   δ_{T+1} = 0
    p_t = α ⊙ δ_t  (= dC/dz_t)
    dC/dA = Σ_t f_{t−1}ᵀ p_t      dC/dU = Σ_t x_tᵀ p_t      dC/db = Σ_t p_t    dC/dx_t = p_t Uᵀ
    dC/dα = Σ_t δ_t ⊙ (z_t − v_{t−1})                      dC/dθ = dC/dα ⊙ α (1 − α)
    dC/dg = ⟨dC/dA, G − diag(d)⟩                           dC/dγ = g · dC/dg
    dC/dρ = dC/dA ⊙ W    dC/dσ_i = (1 − tanh²σ_i) Σ_j dC/dA_ij C_ij exp(ρ_ij)    dC/dw = C ⊙ dC/dA
    dC/du = U ⊙ dC/dU

Only one (B, N) × (N, N) product with the time-independent α[:, None] Aᵀ sits inside the reverse
scan; the weight, input, bias and time-constant gradients are single contractions over all T
steps afterwards. Residuals (time-major): f_1..f_T, z_t − v_{t−1}, and x.

What the model is: a graded-activation abstraction of the worm's neurons (most C. elegans neurons
do not fire action potentials) with the anatomical wiring as a hard constraint. It has no
neuromodulation, no extrasynaptic signalling, no synaptic dynamics, no muscles or body, and its
signs and gains are whatever training makes them: they are hypotheses consistent with a task,
not measurements.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxnn.core import Layer, check_input, check_shape, fail, make_stateful_layer
from jaxnn.layers._checks import finite_real
from jaxnn.layers.recurrent import recurrent_noise

NAME = "ConnectomeRNN"

# McIntire, Jorgensen, Kaplan & Horvitz 1993 (Nature 364:337): the 26 GABAergic neurons.
GABAERGIC: tuple[str, ...] = (
    *(f"DD{i}" for i in range(1, 7)), *(f"VD{i}" for i in range(1, 14)),
    "RMEL", "RMER", "RMED", "RMEV", "AVL", "DVB", "RIS",
)
SIGN_MODES = ("transmitter", "neuron", "synapse")


class Wiring(NamedTuple):
    """A wiring diagram the layer accepts (a `jaxnn.data.connectome.Connectome` works too):
    neurons (N,) names; chemical (N, N) ≥ 0, chemical[i, j] from pre i onto post j; gap (N, N)
    symmetric ≥ 0. Entries need not be integers (a dense control has fractional weights)."""

    neurons: tuple[str, ...]
    chemical: np.ndarray
    gap: np.ndarray


class ConnectomeParams(NamedTuple):
    w_chem: jax.Array  # (N, N) ρ (log gain per synapse) or, for signs="synapse", the signed w
    sign: Any  # (N,) σ, s = tanh(σ), for signs="neuron"; () otherwise
    gap: jax.Array  # () γ, g = κ·gap_gain·exp(γ)
    tau: jax.Array  # (N,) θ, α = dt/τ = sigmoid(θ)
    w_in: jax.Array  # (n_in, N) u, U = M_in ⊙ exp(u)
    b: jax.Array  # (N,)


class ConnectomeSpec(NamedTuple):
    """Everything fixed at build time (NumPy, float64): see the module docstring."""

    neurons: tuple[str, ...]
    chemical: np.ndarray  # C = κ·counts (N, N)
    gap: np.ndarray  # G, counts (N, N), symmetric
    input_mask: np.ndarray  # M_in (n_in, N)
    readout: np.ndarray  # R (N, K)
    signs: np.ndarray | str  # (N,) fixed ±1, or "neuron" / "synapse"
    kappa: float
    gap_gain: float
    dt: float
    tau: float
    noise: float
    readout_scale: float
    input_names: tuple[tuple[str, ...], ...]
    readout_names: tuple[tuple[str, ...], ...]


class Effective(NamedTuple):
    """The physical quantities of a parameter set: W (N, N) signed chemical weights, g the gap
    conductance per junction, tau (N,) time constants (units of dt), U (n_in, N) input gains."""

    W: jax.Array
    g: jax.Array
    tau: jax.Array
    U: jax.Array


def _groups(what: str, groups: Sequence, index: dict[str, int]) -> tuple[tuple[str, ...], ...]:
    if isinstance(groups, str) or not isinstance(groups, (tuple, list)) or not groups:
        fail(NAME, f"{what} must be a non-empty sequence of neuron names or tuples of names, "
                   f"got {groups!r}", exc=TypeError)
    out = []
    for g in groups:
        names = (g,) if isinstance(g, str) else tuple(g)
        if not names or not all(isinstance(n, str) for n in names):
            fail(NAME, f"{what}: each entry must be a neuron name or a non-empty tuple of names, "
                       f"got {g!r}", exc=TypeError)
        missing = [n for n in names if n not in index]
        if missing:
            fail(NAME, f"{what}: neurons {missing} are not in the wiring ({len(index)} neurons)")
        out.append(names)
    return tuple(out)


def transmitter_signs(neurons: Sequence[str]) -> np.ndarray:
    """(N,) −1 for the GABAergic neurons (`GABAERGIC`), +1 for every other neuron."""
    return np.array([-1.0 if n in GABAERGIC else 1.0 for n in neurons])


def connectome_spec(wiring: Any, inputs: Sequence, readout: Sequence, *,
                    signs: str | Sequence[float] = "transmitter", tau: float = 100.0,
                    dt: float = 10.0, noise: float = 0.0, gap_gain: float = 1.0,
                    rec_gain: float = 1.0, readout_scale: float = 1.0) -> ConnectomeSpec:
    """The fixed part of a `ConnectomeRNN` (checked; see the module docstring).

    wiring: an object with .neurons, .chemical, .gap (a `Connectome` or a `Wiring`).
    inputs: one entry per input channel, a neuron name or a tuple of names the channel drives.
    readout: one entry per output, a name or a tuple of names whose activations are averaged.
    """
    try:
        neurons = tuple(str(n) for n in wiring.neurons)
        chem = np.asarray(wiring.chemical, np.float64)
        gap = np.asarray(wiring.gap, np.float64)
    except AttributeError:
        fail(NAME, f"wiring must have .neurons, .chemical and .gap (a Connectome or Wiring), got "
                   f"{type(wiring).__name__}", exc=TypeError)
    n = len(neurons)
    if n == 0 or len(set(neurons)) != n:
        fail(NAME, "wiring.neurons must be non-empty and unique")
    for what, m in (("chemical", chem), ("gap", gap)):
        if m.shape != (n, n):
            fail(NAME, f"wiring.{what} must have shape ({n}, {n}), got {m.shape}")
        if not np.all(np.isfinite(m)) or np.any(m < 0):
            fail(NAME, f"wiring.{what} must be finite and >= 0")
    if not np.allclose(gap, gap.T):
        fail(NAME, "wiring.gap must be symmetric")
    index = {name: i for i, name in enumerate(neurons)}
    in_names, out_names = _groups("inputs", inputs, index), _groups("readout", readout, index)
    tau, dt = finite_real(NAME, "tau", tau), finite_real(NAME, "dt", dt)
    noise, gap_gain = finite_real(NAME, "noise", noise), finite_real(NAME, "gap_gain", gap_gain)
    rec_gain = finite_real(NAME, "rec_gain", rec_gain)
    readout_scale = finite_real(NAME, "readout_scale", readout_scale)
    if not (dt > 0 and tau > dt):
        fail(NAME, f"need 0 < dt < tau (τ = dt / sigmoid(θ) > dt), got tau={tau}, dt={dt}")
    if noise < 0 or gap_gain <= 0 or rec_gain <= 0:
        fail(NAME, f"need noise >= 0, gap_gain > 0, rec_gain > 0; got {noise}, {gap_gain}, {rec_gain}")
    if isinstance(signs, str):
        if signs not in SIGN_MODES:
            fail(NAME, f"signs must be one of {SIGN_MODES} or an (N,) array of ±1, got {signs!r}")
        sign_spec: np.ndarray | str = transmitter_signs(neurons) if signs == "transmitter" else signs
    else:
        sign_spec = np.asarray(signs, np.float64)
        if sign_spec.shape != (n,) or not np.all(np.abs(sign_spec) == 1):
            fail(NAME, f"a signs array must have shape ({n},) and entries ±1, got shape "
                       f"{sign_spec.shape}")
    radius = float(np.max(np.abs(np.linalg.eigvals(chem)))) if chem.any() else 1.0
    kappa = rec_gain / max(radius, 1e-6)
    m_in = np.zeros((len(in_names), n))
    for k, names in enumerate(in_names):
        m_in[k, [index[x] for x in names]] = 1.0
    r = np.zeros((n, len(out_names)))
    for k, names in enumerate(out_names):
        r[[index[x] for x in names], k] = 1.0 / len(names)
    return ConnectomeSpec(neurons, kappa * chem, gap, m_in, r, sign_spec, kappa, gap_gain, dt, tau,
                          noise, readout_scale, in_names, out_names)


def _c(a, dtype):
    return jnp.asarray(a, dtype)


def effective(spec: ConnectomeSpec, params: ConnectomeParams) -> Effective:
    """W, g, τ and U of `params` (see the module docstring)."""
    dtype = params.w_chem.dtype
    C = _c(spec.chemical, dtype)
    if isinstance(spec.signs, str) and spec.signs == "synapse":
        W = C * params.w_chem
    else:
        s = jnp.tanh(params.sign) if isinstance(spec.signs, str) else _c(spec.signs, dtype)
        W = s[:, None] * (C * jnp.exp(params.w_chem))
    g = spec.kappa * spec.gap_gain * jnp.exp(params.gap)
    tau = spec.dt / jax.nn.sigmoid(params.tau)
    U = _c(spec.input_mask, dtype) * jnp.exp(params.w_in)
    return Effective(W, g, tau, U)


def _laplacian(spec: ConnectomeSpec) -> np.ndarray:
    """diag(d) − G: the gap term is −g f (diag(d) − G)."""
    return np.diag(spec.gap.sum(1)) - spec.gap


def connectome_scan(A, drive, noise, alpha):
    """The Euler loop: A (N, N), drive (T, B, N) = x_t U + b, noise (T, B, N) or None,
    alpha (N,). Returns (f, e), each (T, B, N): the activations and z_t − v_{t−1}."""
    def step(carry, inputs):
        v, f = carry
        d, n = inputs
        e = f @ A + d - v
        v = v + alpha[None, :] * e
        if n is not None:
            v = v + n
        f = jax.nn.sigmoid(v)
        return (v, f), (f, e)

    v0 = jnp.zeros(drive.shape[1:], drive.dtype)
    return lax.scan(step, (v0, jax.nn.sigmoid(v0)), (drive, noise))[1]


def connectome_scan_backward(A, alpha, f, g):
    """The reverse scan: f (T, B, N) activations, g (T, B, N) = dC/df_t from the outputs
    -> δ (T, B, N) = dC/dv_t. One product with the fixed (α[:, None] Aᵀ) per step."""
    back = alpha[:, None] * A.T
    keep = 1 - alpha

    def step(delta, inputs):
        g_t, f_t = inputs
        delta = f_t * (1 - f_t) * (g_t + delta @ back) + keep[None, :] * delta
        return delta, delta

    return lax.scan(step, jnp.zeros_like(g[0]), (g, f), reverse=True)[1]


def connectome_layer(spec: ConnectomeSpec, dtype=jnp.float32) -> Layer:
    """The `Layer` of a spec: x (B, T, n_in) -> y (B, T, K). State `()`; with noise > 0 a key
    draws the noise (train or eval) and is required when train=True."""
    n = len(spec.neurons)
    n_in = spec.input_mask.shape[0]
    mode = spec.signs if isinstance(spec.signs, str) else "fixed"
    lap = _laplacian(spec)
    alpha0 = spec.dt / spec.tau

    def init(key, input_shape):
        shape = check_shape(NAME, input_shape, ndim=3)
        if shape[-1] != n_in:
            fail(NAME, f"input has {shape[-1]} channels, the layer has {n_in} input groups")
        k_w, k_s = jax.random.split(key)
        z = jax.random.normal(k_w, (n, n), dtype)
        if mode == "synapse":  # random signs, |w| = exp(0.1 z'): no sign favoured at the start
            k_a, k_b = jax.random.split(k_w)
            start = jnp.where(jax.random.bernoulli(k_a, 0.5, (n, n)), 1.0, -1.0).astype(dtype)
            w_chem = start * jnp.exp(0.1 * jax.random.normal(k_b, (n, n), dtype))
        else:
            w_chem = 0.1 * z
        sign: Any = jax.random.normal(k_s, (n,), dtype) if mode == "neuron" else ()
        theta = jnp.full((n,), float(np.log(alpha0 / (1 - alpha0))), dtype)
        params = ConnectomeParams(w_chem, sign, jnp.zeros((), dtype), theta,
                                  jnp.zeros((n_in, n), dtype), jnp.zeros((n,), dtype))
        return (*shape[:2], spec.readout.shape[1]), params, ()

    def run(params, x, key):
        check_input(NAME, x, ndim=3, trailing=(n_in,), dtype=params.w_chem.dtype)
        dt_ = params.w_chem.dtype
        eff = effective(spec, params)
        A = eff.W - eff.g * _c(lap, dt_)
        alpha = jax.nn.sigmoid(params.tau)
        drive = jnp.swapaxes(x, 0, 1) @ eff.U + params.b[None, None, :]
        xi = None
        if key is not None:
            xi = recurrent_noise(key, drive.shape, dt_) * float(np.sqrt(2 * alpha0) * spec.noise)
        f, e = connectome_scan(A, drive, xi, alpha)
        y = jnp.swapaxes(f, 0, 1) @ _c(spec.readout * spec.readout_scale, dt_)
        return y, (f, e, x)

    def backward(params, residuals, dy):
        f, e, x = residuals
        dt_ = params.w_chem.dtype
        eff = effective(spec, params)
        lap_ = _c(lap, dt_)
        A = eff.W - eff.g * lap_
        alpha = jax.nn.sigmoid(params.tau)
        R = _c(spec.readout * spec.readout_scale, dt_)
        g = jnp.swapaxes(dy @ R.T, 0, 1)
        delta = connectome_scan_backward(A, alpha, f, g)
        p = alpha[None, None, :] * delta
        f_prev = jnp.concatenate([jnp.full_like(f[:1], 0.5), f[:-1]], axis=0)
        dA = f_prev.reshape(-1, n).T @ p.reshape(-1, n)  # Σ_t f_{t−1}ᵀ p_t as one 2-D product
        C = _c(spec.chemical, dt_)
        if mode == "synapse":
            d_chem, d_sign = C * dA, ()
        else:
            d_chem = dA * eff.W
            if mode == "neuron":
                d_sign = (1 - jnp.tanh(params.sign) ** 2) * (dA * C * jnp.exp(params.w_chem)).sum(1)
            else:
                d_sign = ()
        d_gap = -eff.g * jnp.sum(dA * lap_)
        d_tau = jnp.einsum("tbn,tbn->n", delta, e) * alpha * (1 - alpha)
        dU = jnp.swapaxes(x, 0, 1).reshape(-1, n_in).T @ p.reshape(-1, n)
        dx = jnp.swapaxes(p @ eff.U.T, 0, 1)
        return ConnectomeParams(d_chem, d_sign, d_gap, d_tau, dU * eff.U, p.sum((0, 1))), dx

    def forward(params, state, x, *, key=None, train):
        if spec.noise > 0.0 and train and key is None:
            fail(NAME, "recurrent noise needs a key when train=True")
        y, residuals = run(params, x, key if spec.noise > 0.0 else None)
        return y, residuals, state

    return make_stateful_layer(NAME, init, forward, backward)


def ConnectomeRNN(wiring: Any, inputs: Sequence, readout: Sequence, *,
                  signs: str | Sequence[float] = "transmitter", tau: float = 100.0,
                  dt: float = 10.0, noise: float = 0.0, gap_gain: float = 1.0,
                  rec_gain: float = 1.0, readout_scale: float = 1.0, dtype=jnp.float32) -> Layer:
    """A rate network on a connectome: x (B, T, len(inputs)) -> y (B, T, len(readout)).

    See the module docstring for the equations; `connectome_spec` for the arguments. tau, dt in
    the same unit (ms); tau is every neuron's initial time constant (trained from there).
    signs: "transmitter" (GABAergic inhibitory, fixed), "neuron" (one learned sign per neuron),
    "synapse" (one learned sign per synapse) or an (N,) array of fixed ±1.
    noise: σ of the noise on the potentials; with noise > 0 a key is needed when train=True.
    """
    return connectome_layer(connectome_spec(wiring, inputs, readout, signs=signs, tau=tau, dt=dt,
                                            noise=noise, gap_gain=gap_gain, rec_gain=rec_gain,
                                            readout_scale=readout_scale), dtype)


# ------------------------------------------------------------------------------ control wirings
def _directed_swaps(adj: np.ndarray, rng: np.random.Generator, n_swaps: int) -> np.ndarray:
    """Maslov–Sneppen double-edge swaps of a directed weighted graph: (a→b, c→d) -> (a→d, c→b),
    refused when it would make a self-loop or a second edge; each edge keeps its weight. Keeps
    every neuron's in-degree and out-degree (and its out-strength)."""
    w = adj.copy()
    src, dst = np.nonzero(w)
    if len(src) < 2:
        return w
    for _ in range(n_swaps):
        i, j = rng.integers(len(src), size=2)
        a, b, c, d = src[i], dst[i], src[j], dst[j]
        if i == j or a == d or c == b or w[a, d] or w[c, b]:
            continue
        w[a, d], w[c, b], w[a, b], w[c, d] = w[a, b], w[c, d], 0.0, 0.0
        dst[i], dst[j] = d, b
    return w


def _undirected_swaps(adj: np.ndarray, rng: np.random.Generator, n_swaps: int) -> np.ndarray:
    """Degree-preserving swaps of a symmetric weighted graph: {a,b},{c,d} -> {a,d},{c,b}; the
    diagonal (self-junctions) is left where it is."""
    w = adj.copy()
    iu, ju = np.nonzero(np.triu(w, 1))
    if len(iu) < 2:
        return w
    for _ in range(n_swaps):
        i, j = rng.integers(len(iu), size=2)
        a, b, c, d = iu[i], ju[i], iu[j], ju[j]
        if rng.random() < 0.5:
            c, d = d, c
        if i == j or len({a, b, c, d}) < 4 or w[a, d] or w[c, b]:
            continue
        wab, wcd = w[a, b], w[c, d]
        w[a, b] = w[b, a] = w[c, d] = w[d, c] = 0.0
        w[a, d] = w[d, a] = wab
        w[c, b] = w[b, c] = wcd
        iu[i], ju[i], iu[j], ju[j] = a, d, c, b
    return w


def degree_preserving_shuffle(wiring: Any, seed: int = 0, swaps_per_edge: int = 10) -> Wiring:
    """The same neurons with the chemical graph rewired by directed double-edge swaps (every
    in- and out-degree kept) and the gap-junction graph by undirected ones (every degree kept);
    synapse counts travel with their edges."""
    rng = np.random.default_rng(seed)
    chem = np.asarray(wiring.chemical, np.float64)
    gap = np.asarray(wiring.gap, np.float64)
    chem = _directed_swaps(chem, rng, swaps_per_edge * int((chem > 0).sum()))
    gap = _undirected_swaps(gap, rng, swaps_per_edge * int((np.triu(gap, 1) > 0).sum()))
    return Wiring(tuple(wiring.neurons), chem, gap)


def random_sparse(wiring: Any, seed: int = 0) -> Wiring:
    """Erdős–Rényi wiring with exactly as many chemical edges (no self-loops) and gap-junction
    pairs as `wiring`, carrying its counts in random order."""
    rng = np.random.default_rng(seed)
    chem = np.asarray(wiring.chemical, np.float64)
    gap = np.asarray(wiring.gap, np.float64)
    n = chem.shape[0]
    off = np.flatnonzero(~np.eye(n, dtype=bool))
    new_chem = np.zeros(n * n)
    counts = chem[chem > 0]
    new_chem[rng.choice(off, size=len(counts), replace=False)] = rng.permutation(counts)
    iu = np.triu_indices(n, 1)
    pair_counts = gap[iu][gap[iu] > 0]
    upper = np.zeros(len(iu[0]))
    upper[rng.choice(len(upper), size=len(pair_counts), replace=False)] = rng.permutation(pair_counts)
    new_gap = np.zeros((n, n))
    new_gap[iu] = upper
    new_gap = new_gap + new_gap.T
    return Wiring(tuple(wiring.neurons), new_chem.reshape(n, n), new_gap)


def dense(wiring: Any) -> Wiring:
    """All-to-all wiring (no self-synapses) with the same total chemical and gap-junction counts
    spread evenly over every pair."""
    chem = np.asarray(wiring.chemical, np.float64)
    gap = np.asarray(wiring.gap, np.float64)
    n = chem.shape[0]
    off = 1.0 - np.eye(n)
    return Wiring(tuple(wiring.neurons), off * chem.sum() / off.sum(),
                  off * (gap.sum() - np.trace(gap)) / off.sum())


__all__ = ["ConnectomeParams", "ConnectomeRNN", "ConnectomeSpec", "Effective", "GABAERGIC",
           "SIGN_MODES", "Wiring", "connectome_layer", "connectome_scan",
           "connectome_scan_backward", "connectome_spec", "degree_preserving_shuffle", "dense",
           "effective", "random_sparse", "transmitter_signs"]
