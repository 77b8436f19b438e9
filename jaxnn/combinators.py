"""Combinators: `serial` and `parallel`, and the fan layers.

`serial`/`parallel` take any layers and return a `Layer`. Their params are a tuple with one
entry per child; their state too, unless no child has state, in which case it is `()`. Child i
draws its random numbers from `fold_in(key, i)`. Errors raised by a child are prefixed with
its position, e.g. `serial[7] Dense: expected trailing axes (400,), got input shape (2, 576)`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxnn.core import (
    OURS,
    Layer,
    LayerError,
    LayerTypeError,
    child_key,
    fail,
    located,
    make_layer,
    no_state,
    positive_ints,
    shape_token,
    token_shape,
)


def _check_layers(kind: str, layers) -> list[str]:
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise LayerTypeError(f"{kind}[{i}]: expected a Layer, got {type(layer).__name__}")
    return [f"{kind}[{i}]" for i in range(len(layers))]


def _check_per_child(kind: str, what: str, value: Any, n: int) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != n:
        got = len(value) if isinstance(value, (tuple, list)) else type(value).__name__
        raise LayerError(f"{kind}: expected {what} for {n} layers, got {got}")


def join_states(states) -> Any:
    """A combinator's state from its children's: `()` when none has state, else the tuple."""
    states = tuple(states)
    return () if all(map(no_state, states)) else states


def split_state(kind: str, state: Any, n: int) -> tuple:
    """The children's states from a combinator's (`()` stands for n empty states)."""
    if no_state(state):
        return ((),) * n
    _check_per_child(kind, "state", state, n)
    return tuple(state)


def _unzip(items, n):
    return tuple(tuple(item[k] for item in items) for k in range(n))


def _keys(key, n):
    return jax.random.split(key, max(n, 1))


# ---------------------------------------------------------------------------- serial
def serial(*layers: Layer) -> Layer:
    """Compose layers in sequence: y = F_n(... F_2(F_1(x))).

    params and residuals: tuples with one entry per layer; state too (or `()`, see the module
    docstring). backward runs the layers' backwards in reverse order (the chain rule), passing
    each layer's input gradient dx to the layer before it as its dy.
    """
    names = _check_layers("serial", layers)
    n = len(layers)

    def chain(x, call, *per_child):
        """Thread x through the layers: x, out_i = call(i, layer_i, *items_i, x)."""
        outs = []
        for i, (name, layer, *items) in enumerate(zip(names, layers, *per_child)):
            try:
                x, out = call(i, layer, *items, x)
            except OURS as err:
                raise located(name, err) from None
            outs.append(out)
        return x, tuple(outs)

    def init(key, input_shape):
        def one(i, layer, k, shape):
            shape, params, state = layer.init(k, shape)
            return shape, (params, state)
        shape, ps = chain(input_shape, one, _keys(key, n))
        params, states = _unzip(ps, 2)
        return shape, params, join_states(states)

    def forward(params, state, x, *, key=None, train):
        _check_per_child("serial", "params", params, n)

        def one(i, layer, p, s, x):
            y, r, s = layer.forward(p, s, x, key=child_key(key, i), train=train)
            return y, (r, s)
        y, rs = chain(x, one, params, split_state("serial", state, n))
        residuals, states = _unzip(rs, 2)
        return y, residuals, join_states(states)

    def backward(params, residuals, dy):
        dparams = [None] * n
        for i in reversed(range(n)):
            dparams[i], dy = layers[i].backward(params[i], residuals[i], dy)
        return tuple(dparams), dy

    def apply(params, state, x, *, key=None, train):
        _check_per_child("serial", "params", params, n)
        y, states = chain(x, lambda i, layer, p, s, x: layer.apply(
            p, s, x, key=child_key(key, i), train=train), params, split_state("serial", state, n))
        return y, join_states(states)

    return Layer("serial", init, forward, backward, apply, tuple(layers))


# -------------------------------------------------------------------------- parallel
def parallel(*layers: Layer) -> Layer:
    """Apply layers side by side to a tuple of inputs: (x_1..x_n) -> (F_1(x_1)..F_n(x_n)).

    Input and output shapes are tuples of shapes; params (and state) a tuple per layer.
    Combine with `FanOut` and `FanInSum` / `FanInConcat` to build branches. The backward of
    each branch is independent.
    """
    names = _check_layers("parallel", layers)
    n = len(layers)

    def each(what, xs, call, *per_child):
        """[call(i, layer_i, *items_i, x_i)] with errors located by position."""
        if not isinstance(xs, (tuple, list)) or len(xs) != n:
            raise LayerError(f"parallel: expected a tuple of {n} {what}, got {xs!r:.80}")
        out = []
        for i, (name, layer, *items) in enumerate(zip(names, layers, *per_child, xs)):
            try:
                out.append(call(i, layer, *items))
            except OURS as err:
                raise located(name, err) from None
        return out

    def init(key, input_shapes):
        shapes, params, states = _unzip(each("input shapes", input_shapes, lambda i, layer, k, s:
                                             layer.init(k, s), _keys(key, n)), 3)
        return shapes, params, join_states(states)

    def run(method, params, state, xs, key, train):
        """Every child's `forward` or `apply`, regrouped by output."""
        _check_per_child("parallel", "params", params, n)
        outs = each("inputs", xs, lambda i, layer, p, s, x: getattr(layer, method)(
            p, s, x, key=child_key(key, i), train=train), params, split_state("parallel", state, n))
        *ys, states = _unzip(outs, len(outs[0]) if outs else 2)
        return (*ys, join_states(states))

    def forward(params, state, xs, *, key=None, train):
        return run("forward", params, state, xs, key, train)

    def apply(params, state, xs, *, key=None, train):
        return run("apply", params, state, xs, key, train)

    def backward(params, residuals, dys):
        return _unzip([layer.backward(p, r, dy)
                       for layer, p, r, dy in zip(layers, params, residuals, dys)], 2)

    return Layer("parallel", init, forward, backward, apply, tuple(layers))


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


__all__ = ["FanInConcat", "FanInSum", "FanOut", "join_states", "parallel", "serial", "split_state"]
