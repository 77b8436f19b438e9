"""The layer contract, its type aliases, and the combinators `serial` and `parallel`.

A layer is an immutable value holding four pure functions (hyperparameters live in
their closure, so they are static under `jit`):

    init(key, input_shape)        -> (output_shape, params)
    forward(params, x)            -> (y, residuals)
    backward(params, residuals, dy) -> (dparams, dx)
    apply(params, x)              -> y

Shapes include the batch axis; `-1` may stand for it, as in `jax.example_libraries.stax`.
`params` is a plain pytree (NamedTuples / tuples of arrays); a layer without weights has
`()`. `forward` returns the output and exactly what `backward` needs (the residuals:
what backprop keeps in memory). `backward` is the chain rule written out by hand:

    dC/dX_{i-1} = dC/dX_i · ∂F_i(X_{i-1}, W_i)/∂X_{i-1}      (the returned dx)
    dC/dW_i     = dC/dX_i · ∂F_i(X_{i-1}, W_i)/∂W_i          (the returned dparams)

It never calls autodiff; `dparams` has exactly the pytree structure of `params`. The pair
`forward`/`backward` has the shape of `jax.custom_vjp`'s fwd/bwd, so a layer is checked in
one line against `jax.vjp(layer.apply, params, x)`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
Shape = tuple[int, ...]
Params = Any  # a pytree of arrays
Residuals = Any  # a pytree of arrays saved by `forward` for `backward`
PRNGKey = jax.Array

InitFn = Callable[[PRNGKey, Any], tuple[Any, Params]]
ForwardFn = Callable[[Params, Any], tuple[Any, Residuals]]
BackwardFn = Callable[[Params, Residuals, Any], tuple[Params, Any]]
ApplyFn = Callable[[Params, Any], Any]


class Layer(NamedTuple):
    """A layer: a name and four pure functions (see the module docstring)."""

    name: str
    init: InitFn
    forward: ForwardFn
    backward: BackwardFn
    apply: ApplyFn


class LayerError(ValueError):
    """Bad shape, rank or argument for a layer; the message names the layer."""


class LayerTypeError(TypeError):
    """Wrong dtype or argument type for a layer; the message names the layer."""


def make_layer(
    name: str,
    init: InitFn,
    forward: ForwardFn,
    backward: BackwardFn,
    apply: ApplyFn | None = None,
) -> Layer:
    """Build a `Layer`; `apply` defaults to the output of `forward` (residuals unused)."""
    if apply is None:

        def apply(params, x):
            return forward(params, x)[0]

    return Layer(name, init, forward, backward, apply)


# --------------------------------------------------------------------------- checks
def fail(layer: str, message: str, *, exc: type[Exception] = LayerError):
    """Raise a LayerError (exc=ValueError) or LayerTypeError (exc=TypeError) naming the layer."""
    raise (LayerTypeError if issubclass(exc, TypeError) else LayerError)(f"{layer}: {message}")


def check_shape(layer: str, shape: Any, *, ndim: int | None = None, min_ndim: int = 1) -> Shape:
    """Validate an input shape given to `init`; return it as a tuple of ints.

    Only the leading (batch) axis may be -1; every other size must be positive.
    """
    if not isinstance(shape, (tuple, list)) or not all(isinstance(d, int) for d in shape):
        fail(layer, f"expected an input shape as a tuple of ints, got {shape!r}", exc=TypeError)
    shape = tuple(shape)
    if ndim is not None and len(shape) != ndim:
        fail(layer, f"expected an input of rank {ndim}, got shape {shape} (rank {len(shape)})")
    if len(shape) < min_ndim:
        fail(layer, f"expected an input of rank >= {min_ndim}, got shape {shape}")
    if any(d <= 0 for d in shape[1:]) or (shape and shape[0] == 0) or (shape and shape[0] < -1):
        fail(layer, f"expected positive sizes (-1 allowed for the batch axis), got {shape}")
    return shape


def check_input(layer: str, x: Any, *, ndim: int | None = None, trailing: Shape = ()) -> None:
    """Validate an array given to `forward`/`apply` at trace time.

    `trailing` are the sizes the last axes must have (None for "any").
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        fail(layer, f"expected an array, got {type(x).__name__}", exc=TypeError)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        fail(layer, f"expected a floating-point input, got dtype {x.dtype}", exc=TypeError)
    if ndim is not None and x.ndim != ndim:
        fail(layer, f"expected an input of rank {ndim}, got shape {tuple(x.shape)}")
    if trailing:
        got = tuple(x.shape[x.ndim - len(trailing):]) if x.ndim >= len(trailing) else tuple(x.shape)
        if len(got) != len(trailing) or any(t is not None and t != g for t, g in zip(trailing, got)):
            want = tuple("*" if t is None else t for t in trailing)
            fail(layer, f"expected trailing axes {want}, got input shape {tuple(x.shape)}")


def positive_ints(layer: str, what: str, value: Any, n: int) -> tuple[int, ...]:
    """Normalise an int or an n-sequence of ints to an n-tuple; reject non-positive values."""
    if isinstance(value, int):
        vals = (value,) * n
    elif isinstance(value, (tuple, list)):
        vals = tuple(value)
    else:
        vals = ()
    if len(vals) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        fail(layer, f"{what} must be an int or {n} ints, got {value!r}", exc=TypeError)
    if any(v <= 0 for v in vals):
        fail(layer, f"{what} must be positive, got {value!r}")
    return vals


_OURS = (LayerError, LayerTypeError)  # errors from JAX itself pass through unchanged


def _located(where: str, err: Exception) -> Exception:
    """The same exception type with the position in a combinator prefixed, e.g. "serial[2] "."""
    return type(err)(f"{where} {err}")


# ----------------------------------------------------------------------- combinators
def serial(*layers: Layer) -> Layer:
    """Compose layers in sequence: y = F_n(... F_2(F_1(x))).

    params: a tuple with one entry per layer. residuals: a tuple with one entry per layer.
    backward runs the layers' backwards in reverse order (the chain rule), passing each
    layer's input gradient dx to the layer before it as its dy.
    """
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise LayerTypeError(f"serial[{i}]: expected a Layer, got {type(layer).__name__}")
    names = [f"serial[{i}]" for i in range(len(layers))]

    def _chain(per_layer, x, call):
        """Thread x through the layers, x, out_i = call(layer_i, per_layer_i, x); errors located."""
        outs = []
        for name, layer, item in zip(names, layers, per_layer):
            try:
                x, out = call(layer, item, x)
            except _OURS as err:
                raise _located(name, err) from None
            outs.append(out)
        return x, tuple(outs)

    def _check_params(params):
        if not isinstance(params, (tuple, list)) or len(params) != len(layers):
            got = len(params) if isinstance(params, (tuple, list)) else type(params).__name__
            raise LayerError(f"serial: expected params for {len(layers)} layers, got {got}")

    def init(key, input_shape):
        keys = jax.random.split(key, max(len(layers), 1))
        return _chain(keys, input_shape, lambda layer, k, shape: layer.init(k, shape))

    def forward(params, x):
        _check_params(params)
        return _chain(params, x, lambda layer, p, x: layer.forward(p, x))

    def backward(params, residuals, dy):
        dparams = [None] * len(layers)
        for i in reversed(range(len(layers))):
            dparams[i], dy = layers[i].backward(params[i], residuals[i], dy)
        return tuple(dparams), dy

    def apply(params, x):
        _check_params(params)
        return _chain(params, x, lambda layer, p, x: (layer.apply(p, x), None))[0]

    return Layer("serial", init, forward, backward, apply)


def parallel(*layers: Layer) -> Layer:
    """Apply layers side by side to a tuple of inputs: (x_1..x_n) -> (F_1(x_1)..F_n(x_n)).

    Input and output shapes are tuples of shapes. Combine with `FanOut` and `FanInSum` /
    `FanInConcat` to build branches. The backward of each branch is independent.
    """
    n = len(layers)
    names = [f"parallel[{i}]" for i in range(len(layers))]

    def _split(what, xs):
        if not isinstance(xs, (tuple, list)) or len(xs) != n:
            raise LayerError(f"parallel: expected a tuple of {n} {what}, got {xs!r:.80}")

    def init(key, input_shapes):
        _split("input shapes", input_shapes)
        keys = jax.random.split(key, max(n, 1))
        out = []
        for name, layer, k, s in zip(names, layers, keys, input_shapes):
            try:
                out.append(layer.init(k, s))
            except _OURS as err:
                raise _located(name, err) from None
        return tuple(o[0] for o in out), tuple(o[1] for o in out)

    def forward(params, xs):
        _split("inputs", xs)
        out = []
        for name, layer, p, x in zip(names, layers, params, xs):
            try:
                out.append(layer.forward(p, x))
            except _OURS as err:
                raise _located(name, err) from None
        return tuple(o[0] for o in out), tuple(o[1] for o in out)

    def backward(params, residuals, dys):
        out = [layer.backward(p, r, dy) for layer, p, r, dy in zip(layers, params, residuals, dys)]
        return tuple(o[0] for o in out), tuple(o[1] for o in out)

    def apply(params, xs):
        _split("inputs", xs)
        return tuple(layer.apply(p, x) for layer, p, x in zip(layers, params, xs))

    return Layer("parallel", init, forward, backward, apply)


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
        return y, len(xs)

    def backward(params, n, dy):
        return (), (dy,) * n

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
        return jnp.concatenate(xs, axis), tuple(x.shape[axis] for x in xs)

    def backward(params, sizes, dy):
        bounds = [sum(sizes[:i]) for i in range(1, len(sizes))]
        return (), tuple(jnp.split(dy, bounds, axis))

    return make_layer("FanInConcat", init, forward, backward)
