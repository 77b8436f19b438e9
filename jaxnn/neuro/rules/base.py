"""Layer-local learning rules: a rule that changes one layer of a serial model from that
layer's own activity.

The rule contract itself (`Rule`, `make_rule`, `gradient`, `make_step`, `TrainState`) is
`jaxnn.train.step`; a local rule is one `Rule` among others:

    ΔW_i = f(W_i, X_{i-1}, X_i),   ΔW_j = 0 for j ≠ i

with X_{i-1} (B, ...) the layer's input and X_i its output, both read from the model's one
forward pass in eval mode (`jaxnn.backprop.intermediates`, with the model's state), never a
second one.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxnn import backprop
from jaxnn.core import Layer
from jaxnn.train.step import Rule, make_rule


def check_layer_index(name: str, params, layer: int) -> int:
    """The index of `layer` (negative counts from the end) in a serial model's params tuple."""
    if not isinstance(params, tuple) or not params:
        raise ValueError(f"{name}: needs a serial model (params a tuple per layer), "
                         f"got params of type {type(params).__name__}")
    if not -len(params) <= layer < len(params):
        raise ValueError(f"{name}: layer {layer} is out of range for a model of {len(params)} layers")
    return layer % len(params)


def layer_io(model: Layer, params, x, layer: int, *, state=(), name: str = "local"):
    """(input, output) of layer `layer` of a serial model, from one forward pass in eval mode
    (`jaxnn.backprop.intermediates` with the model's `state`): the input is the previous
    layer's output, or x."""
    i = check_layer_index(name, params, layer)
    outs = [y for _, y in backprop.intermediates(model, params, x, state=state)]
    return (x if i == 0 else outs[i - 1]), outs[i]


def zero_except(params, i: int, layer_updates):
    """Updates for a serial model: `layer_updates` for layer i, zeros for every other layer."""
    zeros = jax.tree.map(jnp.zeros_like, params)
    return tuple(layer_updates if j == i else z for j, z in enumerate(zeros))


def local(name: str, layer_fn: Callable, *, layer: int = 0, ascend: bool) -> Rule:
    """A rule that changes one layer of a serial model from that layer's activity alone.

    layer_fn(layer_params, x_in, y_out) -> (layer_updates, metrics); every other layer
    gets zero updates. x_in, y_out come from `layer_io` (the model's state read, not changed).
    """
    def fn(model, params, batch, model_state):
        x_in, y_out = layer_io(model, params, batch[0], layer, state=model_state, name=name)
        i = check_layer_index(name, params, layer)
        upd, metrics = layer_fn(params[i], x_in, y_out)
        return zero_except(params, i, upd), metrics

    return make_rule(name, fn, ascend=ascend)


__all__ = ["check_layer_index", "layer_io", "local", "zero_except"]
