"""The one seam between the two ways of computing a gradient.

    method="autodiff": jax.value_and_grad of  loss.apply(model.apply(params, state, x)[0], targets)
    method="manual":   the chain rule by hand —
                           y, res_m, state' = model.forward(params, state, x)
                           J, res_l = loss.forward(y, targets)
                           dy       = loss.backward(res_l, 1.0)          # dJ/dy
                           dparams, dx = model.backward(params, res_m, dy)

Both give the same pytree (the structure of `params`); the new state rides beside the loss,
as `jax.value_and_grad(..., has_aux=True)` returns it:

    (params, state, x, targets, key=None) -> ((J, new_state), grads)

(`state` is `()` for a model without state; `key` is for one that draws random numbers.)
`intermediates` and `layer_gradients` open up a `serial` model: every layer's output, and
every layer's state gradient dC/dX_i and weight gradient dC/dW_i, by either method.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.combinators import split_state
from jaxnn.core import OURS, Layer, LayerError, LayerTypeError, check_residuals, located
from jaxnn.losses import Loss

METHODS = ("autodiff", "manual")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def loss_fn(model: Layer, loss: Loss, *, train: bool = True) -> Callable:
    """The objective of the model's forward: (params, state, x, targets, key=None) ->
    (J, new_state)."""
    def objective(params, state, x, targets, key=None):
        y, new_state = model.apply(params, state, x, key=key, train=train)
        return loss.apply(y, targets), new_state
    return objective


def manual_value_and_grad(model: Layer, loss: Loss, *, train: bool = True) -> Callable:
    """The loss and dJ/dparams by the hand-written chain rule (not jitted); signature as
    `value_and_grad`'s."""
    def value_and_grad(params, state, x, targets, key=None):
        y, residuals, new_state = model.forward(params, state, x, key=key, train=train)
        value, res_loss = loss.forward(y, targets)
        dy = loss.backward(res_loss, jnp.ones((), value.dtype))
        return (value, new_state), model.backward(params, residuals, dy)[0]
    return value_and_grad


def value_and_grad(model: Layer, loss: Loss, method: str = "autodiff", *, jit: bool = True,
                   train: bool = True) -> Callable:
    """(params, state, x, targets, key=None) -> ((J, new_state), dJ/dparams), grads shaped
    like params.

    method: "autodiff" (reverse mode through `model.apply`) or "manual" (each layer's
    hand-written `backward`). jit=False returns the eager function (for debugging and for
    measuring what compilation buys).
    """
    if check_method(method) == "autodiff":
        fn = jax.value_and_grad(loss_fn(model, loss, train=train), has_aux=True)
    else:
        fn = manual_value_and_grad(model, loss, train=train)
    return jax.jit(fn) if jit else fn


def grad(model: Layer, loss: Loss, method: str = "autodiff", *, jit: bool = True,
         train: bool = True) -> Callable:
    """Like `value_and_grad`, returning only the gradients."""
    vg = value_and_grad(model, loss, method, jit=False, train=train)
    fn = lambda *args, **kwargs: vg(*args, **kwargs)[1]  # noqa: E731
    return jax.jit(fn) if jit else fn


def manual_vjp(layer: Layer, params, x, dy, *, state=(), key=None, train: bool = False):
    """(y, dparams, dx) from the layer's hand-written rule: the counterpart of
    `jax.vjp(layer, params, x)` (state, key and mode held fixed)."""
    y, residuals, _ = layer.forward(params, state, x, key=key, train=train)
    dparams, dx = layer.backward(params, residuals, dy)
    return y, dparams, dx


def _zero_cotangent(tree):
    """Zero cotangents for inputs that are not differentiated (state, key): zeros of a float
    leaf's dtype, float0 for integer, boolean and key leaves."""
    def zero(leaf):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact):
            return jnp.zeros_like(leaf)
        return np.zeros(jnp.shape(leaf), jax.dtypes.float0)
    return jax.tree.map(zero, tree)


def as_custom_vjp(layer: Layer) -> Layer:
    """The same layer, but its `apply` is a `jax.custom_vjp` whose backward is `layer.backward`.

    `jax.grad` of any code calling the wrapped `apply` (or the layer itself) then runs the
    hand-written chain rule for this layer and autodiff everywhere else, so manual rules drop
    into any JAX code. State and key pass through undifferentiated. The residuals travel from
    the forward to the backward as JAX values, so every call has its own (a layer whose
    residuals are not arrays gets a LayerTypeError naming it).
    """
    if not isinstance(layer, Layer):
        raise LayerTypeError(f"as_custom_vjp: expected a Layer, got {type(layer).__name__}")
    name = f"custom_vjp({layer.name})"

    def apply(params, state, x, *, key=None, train):
        @jax.custom_vjp
        def call(params, state, x, key):
            return layer.apply(params, state, x, key=key, train=train)

        def fwd(params, state, x, key):
            y, residuals, new_state = layer.forward(params, state, x, key=key, train=train)
            check_residuals(name, residuals)
            return (y, new_state), (params, residuals, state, key)

        def bwd(saved, cotangents):
            params, residuals, state, key = saved
            dparams, dx = layer.backward(params, residuals, cotangents[0])
            return dparams, _zero_cotangent(state), dx, _zero_cotangent(key)

        call.defvjp(fwd, bwd)
        return call(params, state, x, key)

    return layer._replace(name=name, apply=apply)


# --------------------------------------------------------------- inside a serial model
def _children(model: Layer, params, state) -> tuple[list[tuple[str, Layer]], tuple]:
    """The named children of a serial model and the per-child state, checked."""
    if not isinstance(model, Layer) or model.name != "serial" or not model.children:
        raise LayerError(f"expected a serial model, got {getattr(model, 'name', model)!r}")
    n = len(model.children)
    if not isinstance(params, (tuple, list)) or len(params) != n:
        raise LayerError(f"serial: expected params for {n} layers, got "
                         f"{len(params) if isinstance(params, (tuple, list)) else type(params).__name__}")
    return ([(f"serial[{i}] {c.name}", c) for i, c in enumerate(model.children)],
            split_state("serial", state, n))


def _child_keys(key, n):
    return [None if key is None else jax.random.fold_in(key, i) for i in range(n)]


def intermediates(model: Layer, params, x, *, state=(), key=None, train: bool = False
                  ) -> list[tuple[str, Any]]:
    """[(name, output)] of every layer of a `serial` model, in order, e.g.
    ("serial[3] MaxPool", (N, 14, 14, 6) array); the last output is the model's.
    `state`, `key` and `train` as in the contract (train defaults to eval)."""
    children, states = _children(model, params, state)
    outs = []
    for (name, child), p, s, k in zip(children, params, states, _child_keys(key, len(children))):
        try:
            x, _ = child.apply(p, s, x, key=k, train=train)
        except OURS as err:
            raise located(name, err) from None
        outs.append((name, x))
    return outs


def layer_gradients(model: Layer, loss: Loss, params, x, targets, method: str = "manual", *,
                    state=(), key=None, train: bool = True) -> list[dict]:
    """For every layer i of a `serial` model: {"name", "output": X_i, "dx": dC/dX_i,
    "dparams": dC/dW_i} — the two backprop equations, layer by layer.

    method="manual": the layers' backwards run in reverse, recording each dy they receive.
    method="autodiff": dC/dX_i = ∂C/∂ε_i at ε = 0 for X_i + ε_i (a zero perturbation added
    to every output), and dC/dW_i by jax.grad, in one reverse pass.
    """
    children, states = _children(model, params, state)
    keys = _child_keys(key, len(children))
    if check_method(method) == "manual":
        outs, residuals, h = [], [], x
        for (_, child), p, s, k in zip(children, params, states, keys):
            h, r, _ = child.forward(p, s, h, key=k, train=train)
            outs.append(h)
            residuals.append(r)
        _, res_loss = loss.forward(h, targets)
        dy = loss.backward(res_loss, jnp.ones((), h.dtype))
        dxs: list[Any] = [None] * len(children)
        dparams: list[Any] = [None] * len(children)
        for i in reversed(range(len(children))):
            dxs[i] = dy
            dparams[i], dy = children[i][1].backward(params[i], residuals[i], dy)
    else:
        outs = [out for _, out in intermediates(model, params, x, state=state, key=key, train=train)]

        def objective(params, eps):
            h = x
            for (_, child), p, s, k, e in zip(children, params, states, keys, eps):
                h = child.apply(p, s, h, key=k, train=train)[0]
                h = jax.tree.map(jnp.add, h, e)
            return loss.apply(h, targets)

        zeros = [jax.tree.map(jnp.zeros_like, out) for out in outs]
        dparams, dxs = jax.grad(objective, argnums=(0, 1))(params, zeros)
    return [{"name": name, "output": out, "dx": dx, "dparams": dp}
            for (name, _), out, dx, dp in zip(children, outs, dxs, dparams)]


__all__ = ["METHODS", "as_custom_vjp", "check_method", "grad", "intermediates",
           "layer_gradients", "loss_fn", "manual_value_and_grad", "manual_vjp", "value_and_grad"]
