"""Compiled training and evaluation steps for any model, loss and optax optimiser.

    step(params, opt_state, x, y) -> (params, opt_state, metrics)

is pure and jit-compiled; everything with side effects (data, logging, checkpoints) stays
outside it. Optimisers are optax's `GradientTransformation`s.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxnn.backprop import value_and_grad
from jaxnn.core import Layer
from jaxnn.losses import Loss


def train_step(model: Layer, loss: Loss, optimizer: optax.GradientTransformation,
               method: str = "autodiff", *, jit: bool = True, donate: bool = True) -> Callable:
    """A step (params, opt_state, x, y) -> (params, opt_state, {"loss": J}).

    W_{t+1} = W_t + optimizer.update(dJ/dW_t): the gradient from `method` ("autodiff" or
    "manual"). With donate=True the old params and optimiser state buffers are reused for
    the new ones (do not read the arguments after the call).
    """
    grad_fn = value_and_grad(model, loss, method, jit=False)

    def step(params, opt_state, x, y):
        value, grads = grad_fn(params, x, y)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, {"loss": value}

    if not jit:
        return step
    return jax.jit(step, donate_argnums=(0, 1) if donate else ())


def eval_step(model: Layer, loss: Loss | None = None, *, jit: bool = True) -> Callable:
    """(params, x, labels) -> {"correct": #argmax hits, "loss": summed loss (if loss given)}.

    Sums rather than means, so batches of any size add up exactly over a dataset.
    No gradients are computed.
    """
    def step(params, x, labels):
        logits = model.apply(params, x)
        metrics = {"correct": (jnp.argmax(logits, axis=-1) == labels).sum()}
        if loss is not None:
            metrics["loss"] = loss.apply(logits, labels) * labels.shape[0]
        return metrics

    return jax.jit(step) if jit else step


__all__ = ["eval_step", "train_step"]
