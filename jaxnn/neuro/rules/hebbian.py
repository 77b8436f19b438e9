"""Hebbian rules for a linear Dense layer y = x @ w (w (n, k), its bias kept at zero).

With a batch x (B, n), y (B, k) and ⟨·⟩ the mean over the batch, each rule is an update ΔW
(n, k) that the step adds (ascend=True):

    hebb    ΔW = ⟨x yᵀ⟩                          "fire together, wire together": ‖W‖ grows
                                                 without bound along the top eigenvector
    oja     ΔW = ⟨x yᵀ⟩ − W diag⟨y²⟩             Δw_j = ⟨y_j (x − y_j w_j)⟩: w_j → a unit
                                                 principal component (Oja 1982)
    sanger  ΔW = ⟨x yᵀ⟩ − W triu⟨y yᵀ⟩           Δw_j = ⟨y_j (x − Σ_{l≤j} y_l w_l)⟩: column j
                                                 → the j-th principal component (Sanger 1989)

For a single column Oja and Sanger coincide. The bias gets a zero update. The layer's input
and output come from the model's forward pass (`jaxnn.neuro.rules.local`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxnn.layers.dense import DenseParams
from jaxnn.neuro.rules.base import local
from jaxnn.train.step import Rule


def _check(name: str, p, x, y):
    if not isinstance(p, DenseParams):
        raise TypeError(f"{name}: the layer must be a Dense layer (DenseParams), got {type(p).__name__}")
    n, k = p.w.shape
    if x.ndim != 2 or x.shape[1] != n or y.shape != (x.shape[0], k):
        raise ValueError(f"{name}: expected layer input (B, {n}) and output (B, {k}), got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")


def hebb_update(w: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """ΔW = xᵀ y / B.  x (B, n), y (B, k) -> (n, k)."""
    return x.T @ y / x.shape[0]


def oja_update(w: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """ΔW = (xᵀ y − W diag(Σ_b y_b²)) / B.  w (n, k), x (B, n), y (B, k) -> (n, k)."""
    return (x.T @ y - w * (y * y).sum(0)[None, :]) / x.shape[0]


def sanger_update(w: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """ΔW = (xᵀ y − W triu(yᵀ y)) / B, triu keeping the diagonal.  -> (n, k)."""
    return (x.T @ y - w @ jnp.triu(y.T @ y)) / x.shape[0]


def reconstruction_error(w: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """⟨‖x − W y‖²⟩ over the batch: what Oja's and Sanger's units come to minimise."""
    return jnp.mean(jnp.sum((x - y @ w.T) ** 2, axis=1))


def output_power(w: jax.Array, x: jax.Array, y: jax.Array) -> jax.Array:
    """−½⟨‖y‖²⟩: plain Hebb is gradient ascent on ½⟨‖y‖²⟩, so this falls without bound."""
    return -0.5 * jnp.mean(jnp.sum(y * y, axis=1))


def _layer_rule(name: str, delta, loss, layer: int) -> Rule:
    def layer_fn(p, x, y):
        _check(name, p, x, y)
        dw = delta(p.w, x, y)
        metrics = {"loss": loss(p.w, x, y), "weight_norm": jnp.linalg.norm(p.w)}
        return DenseParams(dw, jnp.zeros_like(p.b)), metrics

    return local(name, layer_fn, layer=layer, ascend=True)


def hebb(*, layer: int = 0) -> Rule:
    """Plain Hebb on Dense layer `layer` of a serial model (see the module docstring).
    Metrics: "loss" −½⟨‖y‖²⟩ (Hebb ascends ⟨‖y‖²⟩/2), "weight_norm" ‖W‖ before the step."""
    return _layer_rule("hebb", hebb_update, output_power, layer)


def oja(*, layer: int = 0) -> Rule:
    """Oja's rule on Dense layer `layer` (each column its own Oja unit).
    Metrics: "loss" the reconstruction error ⟨‖x − W y‖²⟩, "weight_norm" ‖W‖."""
    return _layer_rule("oja", oja_update, reconstruction_error, layer)


def sanger(*, layer: int = 0) -> Rule:
    """Sanger's generalised Hebbian algorithm on Dense layer `layer` (metrics as `oja`)."""
    return _layer_rule("sanger", sanger_update, reconstruction_error, layer)


def cosine_to(w: jax.Array, v: jax.Array) -> jax.Array:
    """|cos| of the angle between w (n,) and v (n,) (a component's sign is arbitrary)."""
    return jnp.abs(w @ v) / (jnp.linalg.norm(w) * jnp.linalg.norm(v))


def principal_angles(w: jax.Array, v: jax.Array) -> jax.Array:
    """Principal angles in degrees between span(w) and span(v), w, v (n, k) -> (k,), ascending.
    cos θ_i are the singular values of Q_wᵀ Q_v with Q orthonormal bases."""
    qw, _ = jnp.linalg.qr(w)
    qv, _ = jnp.linalg.qr(v)
    s = jnp.clip(jnp.linalg.svd(qw.T @ qv, compute_uv=False), 0, 1)
    return jnp.degrees(jnp.arccos(s))[::-1]


def orthogonality_error(w: jax.Array) -> jax.Array:
    """‖Wᵀ W − I‖_F: 0 when the k columns of w (n, k) are orthonormal."""
    return jnp.linalg.norm(w.T @ w - jnp.eye(w.shape[1], dtype=w.dtype))


__all__ = ["cosine_to", "hebb", "hebb_update", "oja", "oja_update", "orthogonality_error",
           "output_power", "principal_angles", "reconstruction_error", "sanger", "sanger_update"]
