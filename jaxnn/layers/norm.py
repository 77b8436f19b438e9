"""Normalisation: BatchNorm (with running statistics as state) and LayerNorm (stateless).

Both normalise, then scale and shift per feature (the last axis, C):

    x̂ = (x - μ) / sqrt(σ² + ε)        y = γ ⊙ x̂ + β        γ, β: (C,)

and share one backward. With g = γ ⊙ dy, r = 1/sqrt(σ² + ε) and means ⟨·⟩ over the axes
the statistics were taken over (m values per feature / per example):

    dC/dγ = Σ dy ⊙ x̂        dC/dβ = Σ dy
    dC/dx = r ⊙ (g - ⟨g⟩ - x̂ ⊙ ⟨g ⊙ x̂⟩)     when μ, σ² are this input's statistics
    dC/dx = r ⊙ g                            when they are constants (BatchNorm in eval)

The two subtracted terms are the paths through μ and through σ²: every input moves the
statistics that normalise every other input of its group.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnn.core import Layer, check_input, check_shape, check_train, fail, make_layer, make_stateful_layer
from jaxnn.layers._checks import finite_real


class NormParams(NamedTuple):
    scale: jax.Array  # γ, (C,)
    offset: jax.Array  # β, (C,)


class BatchNormState(NamedTuple):
    mean: jax.Array  # running mean, (C,)
    var: jax.Array  # running (biased) variance, (C,)


def _check_eps(name, eps):
    eps = finite_real(name, "eps", eps)
    if eps <= 0:
        fail(name, f"eps must be a positive number, got {eps!r}")
    return eps


def _per_feature(v, ndim):
    """(C,) -> (1, ..., 1, C): an explicit broadcast over the leading axes."""
    return v.reshape((1,) * (ndim - 1) + (-1,))


def _init_params(name, input_shape, dtype, min_ndim):
    shape = check_shape(name, input_shape, min_ndim=min_ndim)
    c = shape[-1]
    return shape, NormParams(jnp.ones((c,), dtype), jnp.zeros((c,), dtype))


def _norm_backward(params, residuals, dy, axes):
    """The shared backward (module docstring); residuals = (x̂, r, coupled ∈ {0., 1.})."""
    xhat, r, coupled = residuals
    lead = tuple(range(dy.ndim - 1))
    dparams = NormParams((dy * xhat).sum(axis=lead), dy.sum(axis=lead))
    g = dy * _per_feature(params.scale, dy.ndim)
    through_stats = g.mean(axis=axes, keepdims=True) + xhat * (g * xhat).mean(axis=axes, keepdims=True)
    return dparams, r * (g - coupled * through_stats)


def BatchNorm(momentum: float = 0.9, eps: float = 1e-5, dtype=jnp.float32) -> Layer:
    """Batch normalisation (Ioffe & Szegedy 2015) over every axis but the last.

    Shapes: x (N, C), or NHWC (N, H, W, C) where statistics are per channel over N, H, W;
    params γ, β (C,); state (running mean, running variance) (C,), starting at 0 and 1.

    train=True:  μ, σ² are the batch's (biased variance, over m = N·H·W values); the new
                 state is  s ← momentum · s + (1 - momentum) · (μ, σ²).
    train=False: μ, σ² are the running averages; the state is returned unchanged, and each
                 example's output depends on that example only.
    Backward: the module docstring (coupled in training, per-feature affine in eval).
    """
    name = "BatchNorm"
    momentum = finite_real(name, "momentum", momentum)
    if not 0 <= momentum < 1:
        fail(name, f"momentum must be in [0, 1), got {momentum!r}")
    eps = _check_eps(name, eps)

    def init(key, input_shape):
        shape, params = _init_params(name, input_shape, dtype, min_ndim=2)
        c = shape[-1]
        return shape, params, BatchNormState(jnp.zeros((c,), dtype), jnp.ones((c,), dtype))

    def forward(params, state, x, *, key=None, train):
        check_input(name, x, trailing=(params.scale.shape[0],), dtype=params.scale.dtype)
        if not isinstance(state, BatchNormState):
            fail(name, f"expected its state, BatchNormState(mean, var) as init returns it, got "
                       f"{state!r:.60}; pass the model's state (state=...)", exc=TypeError)
        if x.ndim < 2:
            fail(name, f"expected a batch axis and a feature axis, got shape {tuple(x.shape)}")
        axes = tuple(range(x.ndim - 1))
        if check_train(name, train):
            mean = x.mean(axis=axes)
            var = jnp.square(x - _per_feature(mean, x.ndim)).mean(axis=axes)
            new_state = BatchNormState(momentum * state.mean + (1 - momentum) * mean,
                                       momentum * state.var + (1 - momentum) * var)
        else:
            mean, var, new_state = state.mean, state.var, state
        r = _per_feature(jax.lax.rsqrt(var + eps), x.ndim)
        xhat = (x - _per_feature(mean, x.ndim)) * r
        y = xhat * _per_feature(params.scale, x.ndim) + _per_feature(params.offset, x.ndim)
        return y, (xhat, r, jnp.asarray(1.0 if train else 0.0, x.dtype)), new_state

    def backward(params, residuals, dy):
        return _norm_backward(params, residuals, dy, tuple(range(dy.ndim - 1)))

    return make_stateful_layer(name, init, forward, backward)


def LayerNorm(eps: float = 1e-5, dtype=jnp.float32) -> Layer:
    """Layer normalisation (Ba et al. 2016): each example normalised over its last axis.

    Shapes: x (..., C) -> y (..., C); γ, β (C,). μ, σ² are per example (per row of the
    last axis, biased variance), so no state and no train/eval difference.
    Backward: the module docstring, with ⟨·⟩ over the last axis.
    """
    name = "LayerNorm"
    eps = _check_eps(name, eps)

    def init(key, input_shape):
        return _init_params(name, input_shape, dtype, min_ndim=1)

    def forward(params, x):
        check_input(name, x, trailing=(params.scale.shape[0],), dtype=params.scale.dtype)
        mean = x.mean(axis=-1, keepdims=True)
        var = jnp.square(x - mean).mean(axis=-1, keepdims=True)
        r = jax.lax.rsqrt(var + eps)
        xhat = (x - mean) * r
        y = xhat * _per_feature(params.scale, x.ndim) + _per_feature(params.offset, x.ndim)
        return y, (xhat, r, jnp.asarray(1.0, x.dtype))

    def backward(params, residuals, dy):
        return _norm_backward(params, residuals, dy, (-1,))

    return make_layer(name, init, forward, backward)


__all__ = ["BatchNorm", "BatchNormState", "LayerNorm", "NormParams"]
