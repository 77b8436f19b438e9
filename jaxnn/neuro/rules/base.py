"""The seam for learning rules: a gradient method is one rule among others.

A rule is a named pure function and one flag:

    update(model, params, batch, state, key) -> (updates, new_state, metrics)
    ascend: bool
    init(params) -> state                     (the rule's own state; () for most rules)

`metrics` holds scalars and always a "loss" (the number the shared loop watches; for a
rule that follows no gradient, the quantity it comes to minimise). `batch` is
`(x, targets)`; rules that learn without labels ignore `targets`, so the same data stream
feeds every rule. `updates` has the pytree structure of `params`. A rule that
descends (a gradient, dJ/dW) has ascend=False and the step moves against it; a rule that
ascends (Hebb, Oja, the perceptron's correction) has ascend=True and the step moves along it:

    descend:  W ← W + optimizer(dJ/dW)       (optax.sgd(η): W − η dJ/dW)
    ascend:   W ← W + optimizer(−ΔW)         (optax.sgd(η): W + η ΔW)

`make_step(model, rule, optimizer)` turns any rule into the one jitted step of the shared
experiment loop, `(train_state, batch, key) -> (train_state, metrics)`. A layer-local rule
(`local`) reads the layer's input and output from `jaxnn.backprop.intermediates`: the
model's one forward pass, never a second one.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxnn import backprop
from jaxnn.core import Layer
from jaxnn.losses import Loss

Params = Any
Updates = Any  # a pytree shaped like Params
Batch = tuple[Any, Any]  # (x, targets)
Metrics = dict[str, jax.Array]
UpdateFn = Callable[[Layer, Params, Batch, Any, jax.Array], tuple[Updates, Any, Metrics]]


class Rule(NamedTuple):
    """A learning rule: see the module docstring for the contract."""

    name: str
    update: UpdateFn
    ascend: bool
    init: Callable[[Params], Any]


class TrainState(NamedTuple):
    """Everything a step carries: params, optimiser state, the rule's state, the step count."""

    params: Params
    opt_state: Any
    rule_state: Any
    step: jax.Array  # int32 scalar


def _no_state(params):
    return ()


def make_rule(name: str, fn: Callable, *, ascend: bool, init: Callable | None = None) -> Rule:
    """Build a Rule from `fn(model, params, batch[, state][, key])`.

    fn returns `(updates, metrics)`; with a `state` parameter it returns
    `(updates, new_state, metrics)` and `init(params) -> state` is required.
    """
    if not isinstance(ascend, bool):
        raise TypeError(f"rule {name!r}: ascend must be True or False, got {ascend!r}")
    names = list(inspect.signature(fn).parameters)
    if names[:3] != ["model", "params", "batch"] or not set(names[3:]) <= {"state", "key"}:
        raise TypeError(f"rule {name!r}: fn must take (model, params, batch[, state][, key]), "
                        f"got ({', '.join(names)})")
    stateful, keyed = "state" in names, "key" in names
    if stateful and init is None:
        raise TypeError(f"rule {name!r}: a rule with state needs init(params) -> state")

    def update(model, params, batch, state, key):
        extra = {"state": state} if stateful else {}
        if keyed:
            extra["key"] = key
        out = fn(model, params, batch, **extra)
        return out if stateful else (out[0], state, out[1])

    return Rule(name, update, ascend, init or _no_state)


def gradient(loss: Loss, method: str = "autodiff") -> Rule:
    """Gradient descent on `loss` as a rule: updates = dJ/dW by `method` ("autodiff" or
    "manual", through `jaxnn.value_and_grad`), ascend=False. Metrics: {"loss": J}."""
    backprop.check_method(method)

    def fn(model, params, batch):
        value, grads = backprop.value_and_grad(model, loss, method, jit=False)(params, *batch)
        return grads, {"loss": value}

    return make_rule(f"gradient[{method}]", fn, ascend=False)


def check_layer_index(name: str, params, layer: int) -> int:
    """The index of `layer` (negative counts from the end) in a serial model's params tuple."""
    if not isinstance(params, tuple) or not params:
        raise ValueError(f"{name}: needs a serial model (params a tuple per layer), "
                         f"got params of type {type(params).__name__}")
    if not -len(params) <= layer < len(params):
        raise ValueError(f"{name}: layer {layer} is out of range for a model of {len(params)} layers")
    return layer % len(params)


def layer_io(model: Layer, params, x, layer: int, *, name: str = "local"):
    """(input, output) of layer `layer` of a serial model, from one forward pass
    (`jaxnn.backprop.intermediates`): the input is the previous layer's output, or x."""
    i = check_layer_index(name, params, layer)
    outs = [y for _, y in backprop.intermediates(model, params, x)]
    return (x if i == 0 else outs[i - 1]), outs[i]


def local(name: str, layer_fn: Callable, *, layer: int = 0, ascend: bool) -> Rule:
    """A rule that changes one layer of a serial model from that layer's activity alone.

    layer_fn(layer_params, x_in, y_out) -> (layer_updates, metrics); every other layer
    gets zero updates. x_in, y_out come from `layer_io`.
    """
    def fn(model, params, batch):
        x_in, y_out = layer_io(model, params, batch[0], layer, name=name)
        i = check_layer_index(name, params, layer)
        upd, metrics = layer_fn(params[i], x_in, y_out)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return tuple(upd if j == i else z for j, z in enumerate(zeros)), metrics

    return make_rule(name, fn, ascend=ascend)


def _optimizer(optimizer) -> optax.GradientTransformation:
    if isinstance(optimizer, (int, float)) and not isinstance(optimizer, bool):
        if not optimizer > 0:
            raise ValueError(f"make_step: a plain learning rate must be > 0, got {optimizer!r}")
        return optax.sgd(float(optimizer))
    if callable(optimizer) and not isinstance(optimizer, optax.GradientTransformation):
        return optax.sgd(optimizer)  # a schedule step -> η_t
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError("make_step: optimizer must be an optax GradientTransformation or a plain "
                        f"learning rate η > 0 (a float or an optax schedule), got "
                        f"{type(optimizer).__name__}")
    return optimizer


def make_step(model: Layer, rule: Rule, optimizer: optax.GradientTransformation | float = 1.0,
              *, jit: bool = True, donate: bool = False):
    """(init, step) for any rule: the shared loop's training step.

    init(params) -> TrainState.
    step(train_state, batch, key) -> (train_state, metrics), jit-compiled; metrics are the
    rule's plus {"update_norm": ‖updates‖₂}. A plain η (a float, or an optax schedule
    t -> η_t) means optax.sgd(η).
    """
    if not isinstance(model, Layer):
        raise TypeError(f"make_step: model must be a jaxnn Layer, got {type(model).__name__}")
    if not isinstance(rule, Rule):
        raise TypeError(f"make_step: rule must be a jaxnn.neuro.rules.Rule, got {type(rule).__name__}")
    opt = _optimizer(optimizer)

    def init(params) -> TrainState:
        return TrainState(params, opt.init(params), rule.init(params), jnp.zeros((), jnp.int32))

    def step(ts: TrainState, batch, key):
        updates, rule_state, metrics = rule.update(model, ts.params, batch, ts.rule_state, key)
        if "loss" not in metrics:
            raise ValueError(f"rule {rule.name!r}: its metrics must include a 'loss' (the number "
                             f"the shared loop watches), got {sorted(metrics)}")
        direction = jax.tree_util.tree_map(jnp.negative, updates) if rule.ascend else updates
        deltas, opt_state = opt.update(direction, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, deltas)
        metrics = dict(metrics, update_norm=optax.tree.norm(updates))
        return TrainState(params, opt_state, rule_state, ts.step + 1), metrics

    if jit:
        step = jax.jit(step, donate_argnums=(0,) if donate else ())
    return init, step


__all__ = ["Batch", "Metrics", "Rule", "TrainState", "Updates", "check_layer_index", "gradient",
           "layer_io", "local", "make_rule", "make_step"]
