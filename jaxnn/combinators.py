"""Combinators: `serial` and `parallel` (for either contract), and the fan layers.

`serial`/`parallel` of plain layers is a plain `Layer`. If any child is a `StatefulLayer`,
the combinator is one too: plain children are lifted (`jaxnn.core.stateful`), the state is
a tuple with one entry per child (`()` for the plain ones), and child i draws its random
numbers from `fold_in(key, i)`. Errors raised by a child are prefixed with its position,
e.g. `serial[7] Dense: expected trailing axes (400,), got input shape (2, 576)`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxnn.core import (
    OURS, AnyLayer, Layer, LayerError, LayerTypeError, StatefulLayer, child_key, fail,
    is_stateful, located, make_layer, positive_ints, shape_token, stateful, token_shape,
)


def _check_layers(kind: str, layers) -> list[str]:
    for i, layer in enumerate(layers):
        if not isinstance(layer, (Layer, StatefulLayer)):
            raise LayerTypeError(f"{kind}[{i}]: expected a Layer, got {type(layer).__name__}")
    return [f"{kind}[{i}]" for i in range(len(layers))]


def _check_per_child(kind: str, what: str, value: Any, n: int) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != n:
        got = len(value) if isinstance(value, (tuple, list)) else type(value).__name__
        raise LayerError(f"{kind}: expected {what} for {n} layers, got {got}")


def _each(names, call, *per_child):
    """[call(i, *items_i)] with errors located by position."""
    out = []
    for i, (name, *items) in enumerate(zip(names, *per_child)):
        try:
            out.append(call(i, *items))
        except OURS as err:
            raise located(name, err) from None
    return out


def _unzip(pairs, n):
    return tuple(tuple(p[k] for p in pairs) for k in range(n))


# ---------------------------------------------------------------------------- serial
def serial(*layers: AnyLayer) -> AnyLayer:
    """Compose layers in sequence: y = F_n(... F_2(F_1(x))).

    params, state and residuals: tuples with one entry per layer. backward runs the layers'
    backwards in reverse order (the chain rule), passing each layer's input gradient dx to
    the layer before it as its dy.
    """
    names = _check_layers("serial", layers)
    n = len(layers)

    def chain(items, x, call):
        """Thread x through the layers: x, out_i = call(i, layer_i, item_i, x)."""
        outs = []
        for i, (name, layer, item) in enumerate(zip(names, layers, items)):
            try:
                x, out = call(i, layer, item, x)
            except OURS as err:
                raise located(name, err) from None
            outs.append(out)
        return x, tuple(outs)

    def backward(params, residuals, dy):
        dparams = [None] * n
        for i in reversed(range(n)):
            dparams[i], dy = layers[i].backward(params[i], residuals[i], dy)
        return tuple(dparams), dy

    def keys(key):
        return jax.random.split(key, max(n, 1))

    if not any(map(is_stateful, layers)):
        def init(key, input_shape):
            return chain(keys(key), input_shape, lambda i, layer, k, shape: layer.init(k, shape))

        def forward(params, x):
            _check_per_child("serial", "params", params, n)
            return chain(params, x, lambda i, layer, p, x: layer.forward(p, x))

        def apply(params, x):
            _check_per_child("serial", "params", params, n)
            return chain(params, x, lambda i, layer, p, x: (layer.apply(p, x), None))[0]

        return Layer("serial", init, forward, backward, apply, tuple(layers))

    layers = [stateful(layer) for layer in layers]

    def init_s(key, input_shape):
        def one(i, layer, k, shape):
            shape, p, s = layer.init(k, shape)
            return shape, (p, s)
        shape, ps = chain(keys(key), input_shape, one)
        params, state = _unzip(ps, 2)
        return shape, params, state

    def forward_s(params, state, x, *, key=None, train):
        _check_per_child("serial", "params", params, n)
        _check_per_child("serial", "state", state, n)

        def one(i, layer, ps, x):
            y, r, s = layer.forward(*ps, x, key=child_key(key, i), train=train)
            return y, (r, s)
        y, rs = chain(tuple(zip(params, state)), x, one)
        residuals, new_state = _unzip(rs, 2)
        return y, residuals, new_state

    def apply_s(params, state, x, *, key=None, train):
        _check_per_child("serial", "params", params, n)
        _check_per_child("serial", "state", state, n)
        return chain(tuple(zip(params, state)), x,
                     lambda i, layer, ps, x: layer.apply(*ps, x, key=child_key(key, i), train=train))

    return StatefulLayer("serial", init_s, forward_s, backward, apply_s, tuple(layers))


# -------------------------------------------------------------------------- parallel
def parallel(*layers: AnyLayer) -> AnyLayer:
    """Apply layers side by side to a tuple of inputs: (x_1..x_n) -> (F_1(x_1)..F_n(x_n)).

    Input and output shapes are tuples of shapes; params (and state) a tuple per layer.
    Combine with `FanOut` and `FanInSum` / `FanInConcat` to build branches. The backward of
    each branch is independent.
    """
    names = _check_layers("parallel", layers)
    n = len(layers)

    def inputs(what, xs):
        if not isinstance(xs, (tuple, list)) or len(xs) != n:
            raise LayerError(f"parallel: expected a tuple of {n} {what}, got {xs!r:.80}")

    def backward(params, residuals, dys):
        return _unzip([layer.backward(p, r, dy)
                       for layer, p, r, dy in zip(layers, params, residuals, dys)], 2)

    def keys(key):
        return jax.random.split(key, max(n, 1))

    if not any(map(is_stateful, layers)):
        def init(key, input_shapes):
            inputs("input shapes", input_shapes)
            return _unzip(_each(names, lambda i, layer, k, s: layer.init(k, s),
                                layers, keys(key), input_shapes), 2)

        def forward(params, xs):
            inputs("inputs", xs)
            _check_per_child("parallel", "params", params, n)
            return _unzip(_each(names, lambda i, layer, p, x: layer.forward(p, x),
                                layers, params, xs), 2)

        def apply(params, xs):
            inputs("inputs", xs)
            _check_per_child("parallel", "params", params, n)
            return tuple(_each(names, lambda i, layer, p, x: layer.apply(p, x), layers, params, xs))

        return Layer("parallel", init, forward, backward, apply, tuple(layers))

    layers = [stateful(layer) for layer in layers]

    def init_s(key, input_shapes):
        inputs("input shapes", input_shapes)
        return _unzip(_each(names, lambda i, layer, k, s: layer.init(k, s),
                            layers, keys(key), input_shapes), 3)

    def each_child(method, outputs, params, state, xs, key, train):
        """Every child's `forward` (outputs 3) or `apply` (outputs 2), regrouped by output."""
        inputs("inputs", xs)
        _check_per_child("parallel", "params", params, n)
        _check_per_child("parallel", "state", state, n)
        return _unzip(_each(names, lambda i, layer, p, s, x: getattr(layer, method)(
            p, s, x, key=child_key(key, i), train=train), layers, params, state, xs), outputs)

    def forward_s(params, state, xs, *, key=None, train):
        return each_child("forward", 3, params, state, xs, key, train)

    def apply_s(params, state, xs, *, key=None, train):
        return each_child("apply", 2, params, state, xs, key, train)

    return StatefulLayer("parallel", init_s, forward_s, backward, apply_s, tuple(layers))


# ------------------------------------------------------------------------------- fans
def FanOut(num: int) -> Layer:
    """Copy the input `num` times: x -> (x, ..., x).

    Backward: a value used several times gets the sum of its gradients, dx = Σ_i dy_i.
    """
    (num,) = positive_ints("FanOut", "num", num, 1)

    def init(key, input_shape):
        return (input_shape,) * num, ()

    def forward(params, x):
        return (x,) * num, ()

    def backward(params, residuals, dys):
        dx = dys[0]
        for d in dys[1:]:
            dx = dx + d
        return (), dx

    return make_layer("FanOut", init, forward, backward)


def FanInSum() -> Layer:
    """Sum a tuple of same-shaped inputs: (x_1..x_n) -> Σ x_i.  Backward: dx_i = dy."""

    def init(key, input_shapes):
        if len({tuple(s) for s in input_shapes}) != 1:
            fail("FanInSum", f"expected inputs of one shape, got {tuple(input_shapes)}")
        return input_shapes[0], ()

    def forward(params, xs):
        if len({tuple(x.shape) for x in xs}) != 1:
            fail("FanInSum", f"expected inputs of one shape, got {[tuple(x.shape) for x in xs]}")
        y = xs[0]
        for x in xs[1:]:
            y = y + x
        return y, shape_token((len(xs),))  # how many inputs get dy back

    def backward(params, count, dy):
        return (), (dy,) * token_shape(count)[0]

    return make_layer("FanInSum", init, forward, backward)


def FanInConcat(axis: int = -1) -> Layer:
    """Concatenate a tuple of inputs along `axis`.  Backward: dy split back into pieces."""

    def init(key, input_shapes):
        ndim = len(input_shapes[0])
        ax = axis % ndim
        rest = {tuple(s[:ax]) + tuple(s[ax + 1:]) for s in input_shapes}
        if len(rest) != 1 or any(len(s) != ndim for s in input_shapes):
            fail("FanInConcat", f"inputs must agree except on axis {axis}, got {tuple(input_shapes)}")
        out = list(input_shapes[0])
        out[ax] = sum(s[ax] for s in input_shapes)
        return tuple(out), ()

    def forward(params, xs):
        return jnp.concatenate(xs, axis), shape_token(tuple(x.shape[axis] for x in xs))

    def backward(params, sizes, dy):
        sizes = token_shape(sizes)
        bounds = [sum(sizes[:i]) for i in range(1, len(sizes))]
        return (), tuple(jnp.split(dy, bounds, axis))

    return make_layer("FanInConcat", init, forward, backward)


__all__ = ["FanInConcat", "FanInSum", "FanOut", "parallel", "serial"]
