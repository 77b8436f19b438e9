"""The layer contracts (stateless and stateful), their type aliases and shared checks.

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

Residuals are arrays only. A static fact the backward needs (an input shape) lives in the
closure, is read off `dy`, or rides in a zero-size `shape_token`; so any layer runs inside
`lax.scan` (`Scan`) and behind `jax.custom_vjp` (`as_custom_vjp`).

A layer with state (running statistics, a random key, train vs eval) is a `StatefulLayer`:

    init(key, input_shape)                        -> (output_shape, params, state)
    forward(params, state, x, *, key=None, train) -> (y, residuals, new_state)
    backward(params, residuals, dy)               -> (dparams, dx)      (as above)
    apply(params, state, x, *, key=None, train)   -> (y, new_state)

`train` is a required keyword, so eval mode is never the silent default. `key` is needed
only by layers that draw random numbers, and only when train=True. `serial`/`parallel`
lift plain layers into this contract (`stateful`) only when some child has state.

dtype rule: a layer with weights computes in its weights' dtype; an input of another
floating dtype raises `LayerTypeError` naming the layer (no silent promotion or cast).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

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
    """A layer: a name and four pure functions (see the module docstring).

    `children` holds the sub-layers of a combinator (empty for a plain layer), so tools such
    as `jaxnn.backprop.intermediates` can walk a model without changing it.
    """

    name: str
    init: InitFn
    forward: ForwardFn
    backward: BackwardFn
    apply: ApplyFn
    children: tuple = ()


class StatefulLayer(NamedTuple):
    """A layer with state, a key and a train/eval switch (see the module docstring).

    `lifted`: the plain layer that `stateful` lifted (state `()`, key and train ignored), else
    None; a training step splits its batch like a plain model's (`jaxnn.microbatch`).
    """

    name: str
    init: Callable[[PRNGKey, Any], tuple[Any, Params, Any]]
    forward: Callable[..., tuple[Any, Residuals, Any]]
    backward: BackwardFn
    apply: Callable[..., tuple[Any, Any]]
    children: tuple = ()
    lifted: Layer | None = None


AnyLayer = Layer | StatefulLayer


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


def make_stateful_layer(name: str, init, forward, backward, apply=None) -> StatefulLayer:
    """Build a `StatefulLayer`; `apply` defaults to forward's (y, new_state)."""
    if apply is None:

        def apply(params, state, x, *, key=None, train):
            y, _, new_state = forward(params, state, x, key=key, train=train)
            return y, new_state

    return StatefulLayer(name, init, forward, backward, apply)


def is_stateful(layer: Any) -> bool:
    """True for a `StatefulLayer` (and for a combinator with a stateful child)."""
    return isinstance(layer, StatefulLayer)


def stateful(layer: AnyLayer) -> StatefulLayer:
    """Lift a plain layer into the stateful contract: state `()`, key and train ignored."""
    if isinstance(layer, StatefulLayer):
        return layer
    if not isinstance(layer, Layer):
        raise LayerTypeError(f"expected a Layer or StatefulLayer, got {type(layer).__name__}")

    def init(key, input_shape):
        return (*layer.init(key, input_shape), ())

    def forward(params, state, x, *, key=None, train):
        return (*layer.forward(params, x), state)

    def apply(params, state, x, *, key=None, train):
        return layer.apply(params, x), state

    return StatefulLayer(layer.name, init, forward, layer.backward, apply, layer.children, layer)


def fixed_state(layer: StatefulLayer, state: Any, *, key: PRNGKey | None = None,
                train: bool) -> Layer:
    """A plain view of a stateful layer with its state, key and mode held fixed (the new
    state is dropped): the (params, x) function that `jax.vjp`, `check_grads`,
    `as_custom_vjp`, `Scan` and `jaxnn.compare` take. Its backward is the layer's own."""
    def init(k, input_shape):
        shape, params, _ = layer.init(k, input_shape)
        return shape, params

    def forward(params, x):
        y, residuals, _ = layer.forward(params, state, x, key=key, train=train)
        return y, residuals

    def apply(params, x):
        return layer.apply(params, state, x, key=key, train=train)[0]

    return Layer(f"{layer.name}[train={train}]", init, forward, layer.backward, apply, layer.children)


def check_residuals(layer: str, residuals: Any) -> None:
    """Residuals must be arrays (the contract above): raise LayerTypeError naming the layer."""
    bad = [type(leaf).__name__ for leaf in jax.tree.leaves(residuals)
           if not isinstance(leaf, (jax.Array, np.ndarray))]
    if bad:
        fail(layer, f"residuals must be arrays (a shape rides in shape_token), got {bad}",
             exc=TypeError)


def check_train(layer: str, train: Any) -> bool:
    """`train` must be a Python bool: it picks a code path, so under `jit` it is static
    (`jax.jit(model.apply, static_argnames="train")`), never a traced value."""
    if not isinstance(train, bool):
        fail(layer, f"train must be a Python bool, got {type(train).__name__}; under jax.jit mark "
                    f"it static: jax.jit(f, static_argnames='train')", exc=TypeError)
    return train


def child_key(key: PRNGKey | None, index: int) -> PRNGKey | None:
    """The key of a combinator's child `index` (None stays None): fold_in by position."""
    return None if key is None else jax.random.fold_in(key, index)


def shape_token(shape: Shape, dtype=jnp.float32) -> Array:
    """A zero-size array carrying `shape` as a residual: zeros((0, *shape)), no memory."""
    return jnp.zeros((0, *shape), dtype)


def token_shape(token: Array) -> Shape:
    """The shape a `shape_token` carries (also after `lax.scan` stacked and sliced it)."""
    return tuple(token.shape[1:])


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


def check_input(layer: str, x: Any, *, ndim: int | None = None, trailing: Shape = (),
                dtype: Any = None) -> None:
    """Validate an array given to `forward`/`apply` at trace time.

    `trailing` are the sizes the last axes must have (None for "any"); `dtype`, for a layer
    with weights, the weights' dtype, which the input must share (the dtype rule above).
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        fail(layer, f"expected an array, got {type(x).__name__}", exc=TypeError)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        fail(layer, f"expected a floating-point input, got dtype {x.dtype}", exc=TypeError)
    if dtype is not None and x.dtype != dtype:
        fail(layer, f"expected input dtype {jnp.dtype(dtype).name} (the weights' dtype), got "
                    f"{x.dtype.name}; cast the input or the params so they match", exc=TypeError)
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


OURS = (LayerError, LayerTypeError)  # errors from JAX itself pass through unchanged


def located(where: str, err: Exception) -> Exception:
    """The same exception type with the position in a combinator prefixed, e.g. "serial[2] "."""
    return type(err)(f"{where} {err}")


__all__ = [
    "AnyLayer", "Array", "Layer", "LayerError", "LayerTypeError", "OURS", "PRNGKey", "Params",
    "Residuals", "Shape", "StatefulLayer", "check_input", "check_residuals", "check_shape", "check_train", "child_key",
    "fail", "fixed_state",
    "is_stateful", "located", "make_layer", "make_stateful_layer", "positive_ints",
    "shape_token", "stateful", "token_shape",
]


