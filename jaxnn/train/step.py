"""One step signature for every way of learning: a gradient is one rule among others.

A rule is a named pure function and one flag:

    update(model, params, model_state, batch, rule_state, key)
        -> (updates, new_model_state, new_rule_state, metrics)
    ascend: bool
    init(params) -> rule_state                 (the rule's own state; () for most rules)

`metrics` holds scalars and always a "loss" (the number the loop watches; for a rule that
follows no gradient, the quantity it comes to minimise). `batch` is `(x, targets)`; rules
that learn without labels ignore `targets`, so the same data stream feeds every rule.
`updates` has the pytree structure of `params`. A rule that descends (a gradient, dJ/dW)
has ascend=False and the step moves against it; a rule that ascends (Hebb, Oja, the
perceptron's correction) has ascend=True and the step moves along it:

    descend:  W ← W + optimizer(dJ/dW)       (optax.sgd(η): W − η dJ/dW)
    ascend:   W ← W + optimizer(−ΔW)         (optax.sgd(η): W + η ΔW)

`make_step(model, rule, optimizer)` turns any rule into a `TrainStep(init, step)`:

    init(params, model_state=()) -> TrainState
    step(train_state, batch, key) -> (train_state, metrics)        (jit-compiled)

and `train_step(model, loss, optimizer, method)` is `make_step(model, gradient(loss, method),
optimizer)`. `eval_step` computes no gradients. Everything with side effects (data, logging,
checkpoints) stays outside the step.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxnn import backprop
from jaxnn.core import Layer
from jaxnn.losses import Loss
from jaxnn.train import chunks

Params = Any
Updates = Any  # a pytree shaped like Params
Batch = tuple[Any, Any]  # (x, targets)
Metrics = dict[str, jax.Array]
UpdateFn = Callable[..., tuple[Updates, Any, Any, Metrics]]


class Rule(NamedTuple):
    """A learning rule: see the module docstring for the contract."""

    name: str
    update: UpdateFn
    ascend: bool
    init: Callable[[Params], Any]


class TrainState(NamedTuple):
    """Everything a step carries: params, the model's state (running statistics; () for most
    models), the optimiser's state, the rule's state, the step count."""

    params: Params
    model_state: Any
    opt_state: Any
    rule_state: Any
    step: jax.Array  # int32 scalar


class TrainStep(NamedTuple):
    """What `make_step` and `train_step` return: `init` builds the state, `step` advances it."""

    init: Callable[..., TrainState]
    step: Callable[[TrainState, Batch, jax.Array], tuple[TrainState, Metrics]]


def _no_state(params):
    return ()


def make_rule(name: str, fn: Callable, *, ascend: bool, init: Callable | None = None) -> Rule:
    """Build a Rule from `fn(model, params, batch[, state][, key][, model_state])`.

    fn returns `(updates, metrics)`; with a `state` parameter (the rule's own state) it returns
    `(updates, new_state, metrics)` and `init(params) -> state` is required. `model_state` is
    the model's state, read only (a rule built here leaves it unchanged).
    """
    if not isinstance(ascend, bool):
        raise TypeError(f"rule {name!r}: ascend must be True or False, got {ascend!r}")
    names = list(inspect.signature(fn).parameters)
    if names[:3] != ["model", "params", "batch"] or not set(names[3:]) <= {"state", "key", "model_state"}:
        raise TypeError(f"rule {name!r}: fn must take (model, params, batch[, state][, key]"
                        f"[, model_state]), got ({', '.join(names)})")
    has_state = "state" in names
    if has_state and init is None:
        raise TypeError(f"rule {name!r}: a rule with state needs init(params) -> state")

    def update(model, params, model_state, batch, state, key):
        extra = {"state": state} if has_state else {}
        if "key" in names:
            extra["key"] = key
        if "model_state" in names:
            extra["model_state"] = model_state
        out = fn(model, params, batch, **extra)
        updates, new_state, metrics = out if has_state else (out[0], state, out[1])
        return updates, model_state, new_state, metrics

    return Rule(name, update, ascend, init or _no_state)


def gradient(loss: Loss, method: str = "autodiff", *, chunk: int | None = None) -> Rule:
    """Gradient descent on `loss` as a rule: updates = dJ/dW by `method` ("autodiff" or
    "manual"), ascend=False; the model's state advances (train=True). `chunk`: examples per
    unrolled chunk (`jaxnn.train.chunks`), None for the whole batch. Metrics: {"loss": J}."""
    backprop.check_method(method)
    chunks.check_chunk(chunk)

    def value_and_grad(model):
        if chunk is None:
            return backprop.value_and_grad(model, loss, method, jit=False)
        return chunks.value_and_grad(model, loss, method, chunk)

    def update(model, params, model_state, batch, rule_state, key):
        (value, model_state), grads = value_and_grad(model)(params, model_state, *batch, key)
        return grads, model_state, rule_state, {"loss": value}

    return Rule(f"gradient[{method}]", update, False, _no_state)


def _optimizer(optimizer) -> optax.GradientTransformation:
    if isinstance(optimizer, (int, float)) and not isinstance(optimizer, bool):
        if not optimizer > 0:
            raise ValueError(f"make_step: a plain learning rate must be > 0, got {optimizer!r}")
        return optax.sgd(float(optimizer))
    if isinstance(optimizer, optax.MultiSteps):  # gradient accumulation over k calls
        return optimizer.gradient_transformation()
    if callable(optimizer) and not isinstance(optimizer, optax.GradientTransformation):
        return optax.sgd(optimizer)  # a schedule step -> η_t
    if not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError("make_step: optimizer must be an optax GradientTransformation (or "
                        "optax.MultiSteps) or a plain "
                        f"learning rate η > 0 (a float or an optax schedule), got "
                        f"{type(optimizer).__name__}")
    return optimizer


def make_step(model: Layer, rule: Rule, optimizer: optax.GradientTransformation | float = 1.0,
              *, donate: bool = False) -> TrainStep:
    """`TrainStep(init, step)` for any rule (module docstring). metrics are the rule's plus
    {"update_norm": ‖updates‖₂}. A plain η (a float, or an optax schedule t -> η_t) means
    optax.sgd(η). donate=True reuses the old state's buffers for the new one (do not read
    the argument after the call)."""
    if not isinstance(model, Layer):
        raise TypeError(f"make_step: model must be a jaxnn Layer, got {type(model).__name__}")
    if not isinstance(rule, Rule):
        raise TypeError(f"make_step: rule must be a jaxnn Rule, got {type(rule).__name__}")
    opt = _optimizer(optimizer)

    def init(params, model_state=()) -> TrainState:
        return TrainState(params, model_state, opt.init(params), rule.init(params),
                          jnp.zeros((), jnp.int32))

    def step(ts: TrainState, batch, key):
        updates, model_state, rule_state, metrics = rule.update(
            model, ts.params, ts.model_state, batch, ts.rule_state, key)
        if "loss" not in metrics:
            raise ValueError(f"rule {rule.name!r}: its metrics must include a 'loss' (the number "
                             f"the loop watches), got {sorted(metrics)}")
        direction = jax.tree.map(jnp.negative, updates) if rule.ascend else updates
        deltas, opt_state = opt.update(direction, ts.opt_state, ts.params)
        params = optax.apply_updates(ts.params, deltas)
        metrics = dict(metrics, update_norm=optax.tree.norm(updates))
        return TrainState(params, model_state, opt_state, rule_state, ts.step + 1), metrics

    return TrainStep(init, jax.jit(step, donate_argnums=(0,) if donate else ()))


def train_step(model: Layer, loss: Loss, optimizer: optax.GradientTransformation | float,
               method: str = "autodiff", *, chunk: int | None = None,
               donate: bool = False) -> TrainStep:
    """W_{t+1} = W_t + optimizer.update(dJ/dW_t), the gradient from `method`:
    `make_step(model, gradient(loss, method, chunk=chunk), optimizer)`."""
    return make_step(model, gradient(loss, method, chunk=chunk), optimizer, donate=donate)


def eval_step(model: Layer, loss: Loss | None = None, *, chunk: int | None = None) -> Callable:
    """(params, state, x, labels) -> {"correct": #argmax hits, "loss": summed loss (if loss
    given)}, jit-compiled; the model runs in eval mode (train=False, state held fixed), chunk
    by chunk with `chunk` (`jaxnn.train.chunks.predict`). No gradients are computed.

    Sums rather than means (`loss.total`, the sum of the loss's terms whatever its
    reduction), so batches of any size add up exactly over a dataset.
    """
    if loss is not None and loss.total is None:
        raise ValueError(f"eval_step: loss {loss.name} has no `total` (the sum of its terms)")
    predict = chunks.predict(model, chunk)

    def step(params, state, x, labels):
        logits = predict(params, state, x)
        out = {"correct": (jnp.argmax(logits, axis=-1) == labels).sum()}
        if loss is not None and loss.total is not None:  # a loss without total was refused above
            out["loss"] = loss.total(logits, labels)
        return out

    return jax.jit(step)


__all__ = ["Batch", "Metrics", "Rule", "TrainState", "TrainStep", "Updates", "eval_step",
           "gradient", "make_rule", "make_step", "train_step"]
