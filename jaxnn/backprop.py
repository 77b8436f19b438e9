"""The one seam between the two ways of computing a gradient.

    method="autodiff": jax.value_and_grad of  loss.apply(model.apply(params, x), targets)
    method="manual":   the chain rule by hand —
                           y, res_m = model.forward(params, x)
                           J, res_l = loss.forward(y, targets)
                           dy       = loss.backward(res_l, 1.0)          # dJ/dy
                           dparams, dx = model.backward(params, res_m, dy)

Both give the same pytree (the structure of `params`) and both are jit-compiled.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from jaxnn.core import Layer
from jaxnn.losses import Loss

METHODS = ("autodiff", "manual")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def loss_fn(model: Layer, loss: Loss) -> Callable:
    """(params, x, targets) -> scalar loss of the model's plain forward."""
    def objective(params, x, targets):
        return loss.apply(model.apply(params, x), targets)
    return objective


def manual_value_and_grad(model: Layer, loss: Loss) -> Callable:
    """(params, x, targets) -> (loss, dloss/dparams) by the hand-written chain rule (not jitted)."""
    def value_and_grad(params, x, targets):
        y, res_model = model.forward(params, x)
        value, res_loss = loss.forward(y, targets)
        dy = loss.backward(res_loss, jnp.ones((), value.dtype))
        dparams, _ = model.backward(params, res_model, dy)
        return value, dparams
    return value_and_grad


def value_and_grad(model: Layer, loss: Loss, method: str = "autodiff", *, jit: bool = True
                   ) -> Callable:
    """A function (params, x, targets) -> (loss_value, grads), grads shaped like params.

    method: "autodiff" (reverse mode through `model.apply`) or "manual" (each layer's
    hand-written `backward`). jit=False returns the eager function (for debugging and for
    measuring what compilation buys).
    """
    if check_method(method) == "autodiff":
        fn = jax.value_and_grad(loss_fn(model, loss))
    else:
        fn = manual_value_and_grad(model, loss)
    return jax.jit(fn) if jit else fn


def grad(model: Layer, loss: Loss, method: str = "autodiff", *, jit: bool = True) -> Callable:
    """Like `value_and_grad`, returning only the gradients."""
    vg = value_and_grad(model, loss, method, jit=False)
    fn = lambda params, x, targets: vg(params, x, targets)[1]  # noqa: E731
    return jax.jit(fn) if jit else fn


def manual_vjp(layer: Layer, params, x, dy):
    """(y, dparams, dx) from the layer's hand-written rule: the counterpart of jax.vjp."""
    y, residuals = layer.forward(params, x)
    dparams, dx = layer.backward(params, residuals, dy)
    return y, dparams, dx


def _is_array(leaf) -> bool:
    return isinstance(leaf, (jax.Array, jnp.ndarray)) or hasattr(leaf, "__jax_array__")


def as_custom_vjp(layer: Layer) -> Layer:
    """The same layer, but its `apply` is a `jax.custom_vjp` whose backward is `layer.backward`.

    `jax.grad` of any code calling the wrapped `apply` then runs the hand-written chain rule
    for this layer (and autodiff everywhere else), so manual rules drop into any JAX code.
    Residual leaves that are not arrays (shapes, counts) are static: they are kept on the
    Python side between the forward and backward traces.
    """
    static = {}

    @jax.custom_vjp
    def apply(params, x):
        return layer.apply(params, x)

    def fwd(params, x):
        y, residuals = layer.forward(params, x)
        leaves, treedef = jax.tree_util.tree_flatten(residuals)
        mask = tuple(_is_array(leaf) for leaf in leaves)
        static["spec"] = (treedef, mask, [None if m else leaf for leaf, m in zip(leaves, mask)])
        arrays = tuple(leaf for leaf, m in zip(leaves, mask) if m)
        return y, (params, arrays)

    def bwd(saved, dy):
        params, arrays = saved
        treedef, mask, fixed = static["spec"]
        it = iter(arrays)
        leaves = [next(it) if m else f for m, f in zip(mask, fixed)]
        residuals = jax.tree_util.tree_unflatten(treedef, leaves)
        return layer.backward(params, residuals, dy)

    apply.defvjp(fwd, bwd)
    return layer._replace(name=f"custom_vjp({layer.name})", apply=apply)


__all__ = ["METHODS", "as_custom_vjp", "grad", "loss_fn", "manual_value_and_grad",
           "manual_vjp", "value_and_grad"]
