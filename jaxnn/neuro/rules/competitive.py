"""Competitive Hebbian learning: units compete for each input, and the winner learns it.

A Dense layer h = x @ w (w (n, K), bias kept at zero) sees inputs of unit length
(normalise the data first: ‖x‖ = 1 is what makes the dot product a similarity). For each
sample b the units are ranked by h_bμ, and

    g_bμ = 1 if μ ranks first,  −Δ if μ ranks k-th,  0 otherwise
    ΔW_:μ = Σ_b g_bμ (x_b − h_bμ w_μ)               (an Oja-normalised Hebbian step)

so the winner moves toward the input and the k-th unit is pushed away ("anti-Hebbian").
Δ = 0 is plain winner-take-all; Δ = 0.4, k = 2 is the rule of Krotov & Hopfield (PNAS 2019,
with their p = 2), whose weights settle at unit length. As in their code, the step is divided
by its largest entry, so the learning rate η is the largest change of any weight.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnn.layers.dense import DenseParams
from jaxnn.neuro.rules.base import local
from jaxnn.train.step import Rule


def competition(y: jax.Array, *, k: int, delta: float) -> jax.Array:
    """g (B, K): 1 at each row's largest entry of y (B, K), −delta at its k-th largest."""
    num = y.shape[1]
    win = jax.nn.one_hot(jnp.argmax(y, axis=1), num, dtype=y.dtype)
    if k == 1 or delta == 0:
        return win
    if k == 2:  # the runner-up by a second argmax (cheaper than top_k on CPU)
        kth = jnp.argmax(jnp.where(win > 0, -jnp.inf, y), axis=1)
    else:
        kth = jax.lax.top_k(y, k)[1][:, k - 1]
    return win - delta * jax.nn.one_hot(kth, num, dtype=y.dtype)


def competitive_update(w: jax.Array, x: jax.Array, y: jax.Array, *, k: int = 2,
                       delta: float = 0.4) -> jax.Array:
    """ΔW = (xᵀ g − W diag(Σ_b g_bμ y_bμ)) / max|·|.  w (n, K), x (B, n), y = x @ w (B, K)."""
    g = competition(y, k=k, delta=delta)
    dw = x.T @ g - w * (g * y).sum(0)[None, :]
    return dw / jnp.maximum(jnp.abs(dw).max(), jnp.finfo(dw.dtype).tiny)


def competitive(*, k: int = 2, delta: float = 0.4, layer: int = 0) -> Rule:
    """The competitive rule on Dense layer `layer` of a serial model (module docstring).
    Metrics: {"loss": ⟨1 − max_μ h_μ⟩, how far inputs lie from their winner (0 when every
    input is some unit's weight vector); "winners": how many distinct units won in the batch}."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"competitive: k (the rank pushed away) must be an int >= 1, got {k!r}")
    if not (isinstance(delta, (int, float)) and 0 <= delta):
        raise ValueError(f"competitive: delta (the anti-Hebbian strength) must be >= 0, got {delta!r}")

    def layer_fn(p, x, y):
        if not isinstance(p, DenseParams):
            raise TypeError(f"competitive: the layer must be Dense, got {type(p).__name__}")
        if y.ndim != 2 or y.shape[1] < k:
            raise ValueError(f"competitive: needs at least k={k} units, got output {tuple(y.shape)}")
        dw = competitive_update(p.w, x, y, k=k, delta=delta)
        winners = jnp.zeros(y.shape[1], jnp.int32).at[jnp.argmax(y, axis=1)].set(1).sum()
        loss = jnp.mean(1 - y.max(axis=1))
        return DenseParams(dw, jnp.zeros_like(p.b)), {"loss": loss, "winners": winners}

    name = "winner_take_all" if delta == 0 else f"krotov_hopfield(k={k}, delta={delta})"
    return local(name, layer_fn, layer=layer, ascend=True)


def winner_take_all(*, layer: int = 0) -> Rule:
    """Only the winner learns: `competitive(k=1, delta=0)`."""
    return competitive(k=1, delta=0.0, layer=layer)


def krotov_hopfield(*, k: int = 2, delta: float = 0.4, layer: int = 0) -> Rule:
    """Krotov & Hopfield's rule (p = 2): the winner learns, the k-th is pushed away by delta."""
    return competitive(k=k, delta=delta, layer=layer)


def unit_length(x: jax.Array) -> jax.Array:
    """Each row of x (N, n) divided by its Euclidean norm (all-zero rows stay zero)."""
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x / jnp.maximum(norm, jnp.finfo(x.dtype).tiny)


def responses(w: jax.Array, x: jax.Array, power: float = 4.5) -> jax.Array:
    """Krotov & Hopfield's hidden activity relu(x @ w)^power. x (N, n), w (n, K) -> (N, K)."""
    return jnp.maximum(x @ w, 0) ** power


__all__ = ["competition", "competitive", "competitive_update", "krotov_hopfield", "responses",
           "unit_length", "winner_take_all"]
