"""Flax modules as jaxnn layers, and jaxnn layers as Flax modules (flax is imported only here).

    from_nnx(make)        a Flax NNX module -> a jaxnn Layer; make(rngs) builds the module
    from_linen(module)    a Flax linen module -> a jaxnn Layer
    to_nnx(layer, input_shape, rngs=...)   a jaxnn Layer -> an nnx.Module
    to_linen(layer)       a jaxnn Layer -> a linen Module

A wrapped Flax module has no hand-written chain rule: its `backward` is `jax.vjp` of its own
forward (recomputed from the saved input x), so its name ends in "[backward=jax.vjp]", and that
label is what `jaxnn.check.compare` reports and what `serial`'s error prefixes show. Its params are a
plain nested dict of arrays (Flax's own naming: ``{"kernel": (kh, kw, cin, cout), "bias": ...}``).
Only parameters are carried: a module with other state (batch statistics, dropout streams) is
refused with a LayerError.

A wrapped jaxnn layer keeps its hand-written backward: with ``manual=True`` (the default) its
call is `jaxnn.as_custom_vjp(layer)`, so `jax.grad` / `nnx.grad` through a Flax model runs the
layer's own chain rule for it and autodiff everywhere else. Its params live in one `nnx.Param`
(linen: the entry "layer" of the "params" collection) holding the layer's params pytree unchanged.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import jax

from jaxnn.backprop import as_custom_vjp
from jaxnn.core import Layer, LayerError, LayerTypeError, check_input, check_shape, make_layer

__all__ = ["from_linen", "from_nnx", "to_linen", "to_nnx"]

VJP_LABEL = "[backward=jax.vjp]"


def _flax(submodule: str):
    try:
        return importlib.import_module(f"flax.{submodule}")
    except ImportError as err:
        raise ImportError(f"jaxnn.interop needs flax ({err}); install it with "
                          f"pip install 'jaxnn[flax]'") from None


def _example_input(name: str, input_shape) -> jax.ShapeDtypeStruct:
    """A concrete stand-in for init's input shape: batch -1 becomes 1, float32."""
    shape = check_shape(name, input_shape)
    return jax.ShapeDtypeStruct((1 if shape[0] == -1 else shape[0], *shape[1:]), jax.numpy.float32)


def _same_batch(input_shape, out_shape):
    return (input_shape[0], *out_shape[1:]) if input_shape[0] == -1 else tuple(out_shape)


def _check_dtype(name: str, params, x) -> None:
    """A layer computes in its params' dtype (jaxnn's rule); Flax would silently promote."""
    check_input(name, x)
    dtypes = {leaf.dtype for leaf in jax.tree.leaves(params)}
    if dtypes and x.dtype not in dtypes:
        want = ", ".join(sorted(str(d) for d in dtypes))
        raise LayerTypeError(f"{name}: expected input dtype {want} (the params' dtype), got {x.dtype}")


def _vjp_layer(name: str, init: Callable, apply_fn: Callable) -> Layer:
    """A Layer whose backward is jax.vjp of apply_fn(params, x); residuals: the input x."""
    def apply(params, x):
        _check_dtype(name, params, x)
        return apply_fn(params, x)

    def forward(params, x):
        return apply(params, x), x

    def backward(params, x, dy):
        return jax.vjp(apply_fn, params, x)[1](dy)

    return make_layer(name, init, forward, backward, apply)


def from_nnx(make: Callable[[Any], Any], name: str | None = None) -> Layer:
    """A Flax NNX module as a jaxnn Layer; backward by jax.vjp.

    make: rngs -> module, e.g. ``lambda rngs: nnx.Conv(1, 6, (5, 5), rngs=rngs)``; init(key, shape)
    calls it with ``nnx.Rngs(params=key)`` and returns the module's nnx.Param values as a pure dict.
    apply(params, x) = module(x) with those params; any shapes the module accepts.
    """
    nnx: Any = _flax("nnx")  # a module imported by name: no static type
    abstract = nnx.eval_shape(lambda: make(nnx.Rngs(0)))
    graphdef, abstract_params, others = nnx.split(abstract, nnx.Param, ...)
    name = f"FlaxNNX({type(abstract).__name__}){VJP_LABEL}" if name is None else name
    if jax.tree.leaves(others):
        kinds = sorted({type(v).__name__ for v in jax.tree.leaves(
            others, is_leaf=lambda v: isinstance(v, nnx.Variable))})
        raise LayerError(f"{name}: only parameters can be carried, the module also holds "
                         f"{', '.join(kinds)}; build it without that state")

    def apply_fn(params, x):
        state = jax.tree.map(lambda v: v, abstract_params)
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state, others)(x)

    def init(key, input_shape):
        _, params, _ = nnx.split(make(nnx.Rngs(params=key)), nnx.Param, ...)
        params = nnx.to_pure_dict(params)
        out = jax.eval_shape(apply_fn, params, _example_input(name, input_shape))
        return _same_batch(input_shape, out.shape), params

    return _vjp_layer(name, init, apply_fn)


def from_linen(module: Any, name: str | None = None) -> Layer:
    """A Flax linen module as a jaxnn Layer; backward by jax.vjp.

    init(key, shape) = module.init(key, zeros(shape))["params"]; apply(params, x) =
    module.apply({"params": params}, x). A module with other variable collections is refused.
    """
    name = f"FlaxLinen({type(module).__name__}){VJP_LABEL}" if name is None else name

    def apply_fn(params, x):
        return module.apply({"params": params}, x)

    def init(key, input_shape):
        example = _example_input(name, input_shape)
        variables = module.init(key, jax.numpy.zeros(example.shape, example.dtype))
        extra = sorted(set(variables) - {"params"})
        if extra:
            raise LayerError(f"{name}: only parameters can be carried, the module also has "
                             f"collections {extra}")
        params = variables.get("params", {})
        out = jax.eval_shape(apply_fn, params, example)
        return _same_batch(input_shape, out.shape), params

    return _vjp_layer(name, init, apply_fn)


def _call(layer: Layer, manual: bool) -> Callable:
    """(params, x) -> y: the layer (eval mode, no state of its own), differentiated by its
    hand-written backward when manual=True."""
    layer = as_custom_vjp(layer) if manual else layer
    return lambda params, x: layer(params, x)


def to_nnx(layer: Layer, input_shape, *, rngs, manual: bool = True):
    """A jaxnn Layer as an nnx.Module built for `input_shape` (batch may be -1).

    module.params: an nnx.Param holding the layer's params pytree; module(x) = layer(params, x),
    differentiated by the layer's hand-written backward when manual=True (else by autodiff).
    module.output_shape: what `layer.init` returned.
    """
    nnx: Any = _flax("nnx")  # a module imported by name: no static type

    class JaxnnLayer(nnx.Module):
        def __init__(self):
            self.output_shape, params, _ = layer.init(rngs.params(), input_shape)
            self.params = nnx.Param(params)
            self.fn = _call(layer, manual)

        def __call__(self, x):
            return self.fn(self.params.get_value(), x)

    JaxnnLayer.__qualname__ = JaxnnLayer.__name__ = f"Jaxnn_{layer.name}"
    return JaxnnLayer()


def to_linen(layer: Layer, *, manual: bool = True):
    """A jaxnn Layer as a linen Module instance; params["layer"] is the layer's params pytree,
    created by `layer.init` from the first input's shape (batch axis as -1)."""
    linen: Any = _flax("linen")  # a module imported by name: no static type
    fn = _call(layer, manual)

    class JaxnnLayer(linen.Module):
        @linen.compact
        def __call__(self, x):
            params = self.param("layer", lambda key: layer.init(key, (-1, *x.shape[1:]))[1])
            return fn(params, x)

    return JaxnnLayer()
