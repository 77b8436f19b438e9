"""The one seam between the two ways of computing a gradient.

    method="autodiff": jax.value_and_grad of  loss.apply(model.apply(params, x), targets)
    method="manual":   the chain rule by hand —
                           y, res_m = model.forward(params, x)
                           J, res_l = loss.forward(y, targets)
                           dy       = loss.backward(res_l, 1.0)          # dJ/dy
                           dparams, dx = model.backward(params, res_m, dy)

Both give the same pytree (the structure of `params`) and both are jit-compiled. For a
`StatefulLayer` model the function also takes the state (and a key) and returns the new
state beside the loss, as `jax.value_and_grad(..., has_aux=True)` does:

    (params, x, targets)                    -> (J, grads)                  plain model
    (params, state, x, targets, key=None)   -> ((J, new_state), grads)     stateful model

`intermediates` and `layer_gradients` open up a `serial` model: every layer's output, and
every layer's state gradient dC/dX_i and weight gradient dC/dW_i, by either method.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxnn.core import (
    AnyLayer, Layer, LayerError, LayerTypeError, check_residuals, is_stateful, stateful,
)
from jaxnn.losses import Loss

METHODS = ("autodiff", "manual")


def check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def loss_fn(model: AnyLayer, loss: Loss, *, train: bool = True) -> Callable:
    """The objective of the model's plain forward: (params, x, targets) -> J for a plain
    model, (params, state, x, targets, key=None) -> (J, new_state) for a stateful one."""
    if is_stateful(model):
        def objective_s(params, state, x, targets, key=None):
            y, new_state = model.apply(params, state, x, key=key, train=train)
            return loss.apply(y, targets), new_state
        return objective_s

    def objective(params, x, targets):
        return loss.apply(model.apply(params, x), targets)
    return objective


def manual_value_and_grad(model: AnyLayer, loss: Loss, *, train: bool = True) -> Callable:
    """The loss and dJ/dparams by the hand-written chain rule (not jitted); signatures as
    `value_and_grad`'s."""
    def chain(params, y, residuals, targets):
        value, res_loss = loss.forward(y, targets)
        dy = loss.backward(res_loss, jnp.ones((), value.dtype))
        return value, model.backward(params, residuals, dy)[0]

    if is_stateful(model):
        def value_and_grad_s(params, state, x, targets, key=None):
            y, residuals, new_state = model.forward(params, state, x, key=key, train=train)
            value, dparams = chain(params, y, residuals, targets)
            return (value, new_state), dparams
        return value_and_grad_s

    def value_and_grad(params, x, targets):
        y, residuals = model.forward(params, x)
        return chain(params, y, residuals, targets)
    return value_and_grad


def value_and_grad(model: AnyLayer, loss: Loss, method: str = "autodiff", *, jit: bool = True,
                   train: bool = True) -> Callable:
    """A function returning the loss and its gradient, grads shaped like params.

    method: "autodiff" (reverse mode through `model.apply`) or "manual" (each layer's
    hand-written `backward`). Signatures: the module docstring. `train` is passed to a
    stateful model. jit=False returns the eager function (for debugging and for measuring
    what compilation buys).
    """
    if check_method(method) == "autodiff":
        fn = jax.value_and_grad(loss_fn(model, loss, train=train), has_aux=is_stateful(model))
    else:
        fn = manual_value_and_grad(model, loss, train=train)
    return jax.jit(fn) if jit else fn


def grad(model: AnyLayer, loss: Loss, method: str = "autodiff", *, jit: bool = True) -> Callable:
    """Like `value_and_grad`, returning only the gradients."""
    vg = value_and_grad(model, loss, method, jit=False)
    fn = lambda *args, **kwargs: vg(*args, **kwargs)[1]  # noqa: E731
    return jax.jit(fn) if jit else fn


def manual_vjp(layer: Layer, params, x, dy):
    """(y, dparams, dx) from the layer's hand-written rule: the counterpart of jax.vjp."""
    y, residuals = layer.forward(params, x)
    dparams, dx = layer.backward(params, residuals, dy)
    return y, dparams, dx


def as_custom_vjp(layer: Layer) -> Layer:
    """The same layer, but its `apply` is a `jax.custom_vjp` whose backward is `layer.backward`.

    `jax.grad` of any code calling the wrapped `apply` then runs the hand-written chain rule
    for this layer (and autodiff everywhere else), so manual rules drop into any JAX code.
    The residuals travel from the forward to the backward as JAX values, so every call has
    its own (a layer whose residuals are not arrays gets a LayerTypeError naming it).
    """
    if not isinstance(layer, Layer):
        raise LayerTypeError(f"as_custom_vjp: expected a plain Layer, got {type(layer).__name__}")

    @jax.custom_vjp
    def apply(params, x):
        return layer.apply(params, x)

    def fwd(params, x):
        y, residuals = layer.forward(params, x)
        check_residuals(f"custom_vjp({layer.name})", residuals)
        return y, (params, residuals)

    def bwd(saved, dy):
        params, residuals = saved
        return layer.backward(params, residuals, dy)

    apply.defvjp(fwd, bwd)
    return layer._replace(name=f"custom_vjp({layer.name})", apply=apply)


# --------------------------------------------------------------- inside a serial model
def _children(model: AnyLayer, params, state) -> tuple[list[tuple[str, Any]], Any]:
    """The named, lifted children of a serial model and the per-child state, checked."""
    if model.name != "serial" or not model.children:
        raise LayerError(f"expected a serial model, got {model.name}")
    n = len(model.children)
    if not isinstance(params, (tuple, list)) or len(params) != n:
        raise LayerError(f"serial: expected params for {n} layers, got "
                         f"{len(params) if isinstance(params, (tuple, list)) else type(params).__name__}")
    if state is None or (isinstance(state, tuple) and not state):
        if any(map(is_stateful, model.children)):
            raise LayerError("serial: this model has state (BatchNorm, Dropout, ...): pass state=")
        state = tuple(() for _ in model.children)  # a plain model, or one lifted as a whole
    elif not isinstance(state, (tuple, list)) or len(state) != n:
        raise LayerError(f"serial: expected state for {n} layers")
    return [(f"serial[{i}] {c.name}", stateful(c)) for i, c in enumerate(model.children)], state


def intermediates(model: AnyLayer, params, x, *, state=None, key=None, train: bool = False
                  ) -> list[tuple[str, Any]]:
    """[(name, output)] of every layer of a `serial` model, in order, e.g.
    ("serial[3] MaxPool", (N, 14, 14, 6) array); the last output is the model's.
    `state`, `key` and `train` are for a stateful model (train defaults to eval)."""
    children, state = _children(model, params, state)
    outs = []
    for i, ((name, child), p, s) in enumerate(zip(children, params, state)):
        x, _ = child.apply(p, s, x, key=None if key is None else jax.random.fold_in(key, i),
                           train=train)
        outs.append((name, x))
    return outs


def layer_gradients(model: AnyLayer, loss: Loss, params, x, targets, method: str = "manual", *,
                    state=None, key=None, train: bool = True) -> list[dict]:
    """For every layer i of a `serial` model: {"name", "output": X_i, "dx": dC/dX_i,
    "dparams": dC/dW_i} — the two backprop equations, layer by layer.

    method="manual": the layers' backwards run in reverse, recording each dy they receive.
    method="autodiff": dC/dX_i = ∂C/∂ε_i at ε = 0 for X_i + ε_i (a zero perturbation added
    to every output), and dC/dW_i by jax.grad, in one reverse pass.
    """
    children, state = _children(model, params, state)
    keys = [None if key is None else jax.random.fold_in(key, i) for i in range(len(children))]
    if check_method(method) == "manual":
        outs, residuals, h = [], [], x
        for (_, child), p, s, k in zip(children, params, state, keys):
            h, r, _ = child.forward(p, s, h, key=k, train=train)
            outs.append(h)
            residuals.append(r)
        _, res_loss = loss.forward(h, targets)
        dy = loss.backward(res_loss, jnp.ones((), h.dtype))
        dxs, dparams = [None] * len(children), [None] * len(children)
        for i in reversed(range(len(children))):
            dxs[i] = dy
            dparams[i], dy = children[i][1].backward(params[i], residuals[i], dy)
    else:
        outs = [out for _, out in intermediates(model, params, x, state=state, key=key, train=train)]

        def objective(params, eps):
            h = x
            for (_, child), p, s, k, e in zip(children, params, state, keys, eps):
                h = child.apply(p, s, h, key=k, train=train)[0]
                h = jax.tree.map(jnp.add, h, e)
            return loss.apply(h, targets)

        zeros = [jax.tree.map(jnp.zeros_like, out) for out in outs]
        dparams, dxs = jax.grad(objective, argnums=(0, 1))(params, zeros)
    return [{"name": name, "output": out, "dx": dx, "dparams": dp}
            for (name, _), out, dx, dp in zip(children, outs, dxs, dparams)]


__all__ = ["METHODS", "as_custom_vjp", "check_method", "grad", "intermediates",
           "layer_gradients", "loss_fn", "manual_value_and_grad", "manual_vjp", "value_and_grad"]
