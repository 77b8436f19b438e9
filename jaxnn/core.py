"""The layer contract: one runtime type, `Layer`, for every layer and model.

A layer is an immutable value holding pure functions (hyperparameters live in their closure,
so they are static under `jit`):

    init(key, input_shape)                          -> (output_shape, params, state)
    forward(params, state, x, *, key=None, train)   -> (y, residuals, new_state)
    backward(params, residuals, dy)                 -> (dparams, dx)
    apply(params, state, x, *, key=None, train)     -> (y, new_state)

Shapes include the batch axis; `-1` may stand for it, as in `jax.example_libraries.stax`.
`params` and `state` are plain pytrees; a layer without weights has params `()`, a layer
without running statistics has state `()` (and a combinator whose children have none has
none). `key` is needed only by a layer that draws random numbers, and only when train=True;
`train` is a required keyword of `forward` and `apply`, so eval mode is never a silent default.

`forward` returns the output, exactly what `backward` needs (the residuals: what backprop
keeps in memory) and the new state. `backward` is the chain rule written out by hand:

    dC/dX_{i-1} = dC/dX_i · ∂F_i(X_{i-1}, W_i)/∂X_{i-1}      (the returned dx)
    dC/dW_i     = dC/dX_i · ∂F_i(X_{i-1}, W_i)/∂W_i          (the returned dparams)

It never calls autodiff; `dparams` has exactly the pytree structure of `params`. State is not
differentiated: it is what the layer carries from one call to the next.

Residuals are arrays only. A static fact the backward needs (an input shape) lives in the
closure, is read off `dy`, or rides in a zero-size `shape_token`; so any layer runs inside
`lax.scan` (`Scan`) and behind `jax.custom_vjp` (`as_custom_vjp`).

Writing a layer. Most layers have no state and draw no random numbers; their author writes
the short form and `make_layer` lifts it once, at construction:

    init(key, input_shape) -> (output_shape, params)
    forward(params, x)     -> (y, residuals)
    backward(params, residuals, dy) -> (dparams, dx)

A layer with state, a key or a train/eval switch (BatchNorm, Dropout, a noisy RateRNN) writes
the contract above and is built by `make_stateful_layer`. Both return a `Layer`.

Calling a layer. `layer(params, x)` is `apply` with state `()`, no key and train=False,
returning y only: the one-line use of a model without state, and the (params, x) function
that `jax.vjp`, `jax.grad` and `check_grads` take. `fixed_state` gives the same view of a layer
with state: its state, key and mode held fixed.

dtype rule: a layer with weights computes in its weights' dtype; an input of another
floating dtype raises `LayerTypeError` naming the layer (no silent promotion or cast).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple, overload

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Shape = tuple[int, ...]
Params = Any  # a pytree of arrays
State = Any  # a pytree of arrays carried from call to call; () for most layers
Residuals = Any  # a pytree of arrays saved by `forward` for `backward`
PRNGKey = jax.Array

InitFn = Callable[[PRNGKey, Any], tuple[Any, Params, State]]
ForwardFn = Callable[..., tuple[Any, Residuals, State]]
BackwardFn = Callable[[Params, Residuals, Any], tuple[Params, Any]]
ApplyFn = Callable[..., tuple[Any, State]]


class Layer(NamedTuple):
    """A layer: a name and four pure functions (see the module docstring).

    `children` holds the sub-layers of a combinator (empty otherwise), so tools such as
    `jaxnn.backprop.intermediates` can walk a model without changing it. To compile a call,
    jit a function of arrays: `jax.jit(lambda params, x: layer(params, x))` or
    `jax.jit(layer.apply, static_argnames="train")` (a Layer is a value holding functions, so it
    is hashable and may be a static argument, but `jax.jit(layer)` itself is refused by JAX).
    """

    name: str
    init: InitFn
    forward: ForwardFn
    backward: BackwardFn
    apply: ApplyFn
    children: tuple = ()

    def __call__(self, params: Params, x: Any, *, state: State = (), key: PRNGKey | None = None,
                 train: bool = False) -> Any:
        """y = F(x): `apply` with the given state (default `()`), returning y only."""
        return self.apply(params, state, x, key=key, train=train)[0]


class LayerError(ValueError):
    """Bad shape, rank or argument for a layer; the message names the layer."""


class LayerTypeError(TypeError):
    """Wrong dtype or argument type for a layer; the message names the layer."""


def make_layer(name: str, init: Callable, forward: Callable, backward: BackwardFn,
               apply: Callable | None = None) -> Layer:
    """A `Layer` from the short form of a layer without state or key (module docstring):
    init(key, shape) -> (shape, params), forward(params, x) -> (y, residuals), and optionally
    apply(params, x) -> y (default: forward's y). State `()` passes through; key and train
    are ignored."""
    short_apply = apply if apply is not None else (lambda params, x: forward(params, x)[0])

    def init_full(key, input_shape):
        return (*init(key, input_shape), ())

    def forward_full(params, state, x, *, key=None, train):
        return (*forward(params, x), state)

    def apply_full(params, state, x, *, key=None, train):
        return short_apply(params, x), state

    return Layer(name, init_full, forward_full, backward, apply_full)


def make_stateful_layer(name: str, init: InitFn, forward: ForwardFn, backward: BackwardFn,
                        apply: ApplyFn | None = None) -> Layer:
    """A `Layer` from the full contract (a layer with state, a key or a train/eval switch);
    `apply` defaults to forward's (y, new_state)."""
    if apply is None:

        def apply(params, state, x, *, key=None, train):
            y, _, new_state = forward(params, state, x, key=key, train=train)
            return y, new_state

    return Layer(name, init, forward, backward, apply)


def fixed_state(layer: Layer, state: State = (), *, key: PRNGKey | None = None,
                train: bool = False) -> Layer:
    """The layer with its state, key and mode held fixed: a `Layer` without state of its own
    (the new state is dropped), whose `forward(params, (), x)` and `layer(params, x)` are the
    (params, x) functions that `jax.vjp`, `check_grads`, `Scan` and `jaxnn.check.compare` take.
    Its backward is the layer's own."""
    if not isinstance(layer, Layer):
        raise LayerTypeError(f"fixed_state: expected a Layer, got {type(layer).__name__}")

    def init(k, input_shape):
        shape, params, _ = layer.init(k, input_shape)
        return shape, params, ()

    def forward(params, _state, x, *, key=None, train=False):
        y, residuals, _ = layer.forward(params, state, x, key=fixed_key, train=fixed_train)
        return y, residuals, ()

    def apply(params, _state, x, *, key=None, train=False):
        return layer.apply(params, state, x, key=fixed_key, train=fixed_train)[0], ()

    fixed_key, fixed_train = key, check_train(layer.name, train)
    return Layer(f"{layer.name}[train={train}]", init, forward, layer.backward, apply,
                 layer.children)


def no_state(state: State) -> bool:
    """True for the state of a layer without state: an empty tuple."""
    return isinstance(state, tuple) and len(state) == 0


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


@overload
def positive_ints(layer: str, what: str, value: Any, n: Literal[1]) -> tuple[int]: ...
@overload
def positive_ints(layer: str, what: str, value: Any, n: Literal[2]) -> tuple[int, int]: ...
@overload
def positive_ints(layer: str, what: str, value: Any, n: int) -> tuple[int, ...]: ...
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
    "Array", "Layer", "LayerError", "LayerTypeError", "OURS", "PRNGKey", "Params", "Residuals",
    "Shape", "State", "check_input", "check_residuals", "check_shape", "check_train", "child_key",
    "fail", "fixed_state", "located", "make_layer", "make_stateful_layer", "no_state",
    "positive_ints", "shape_token", "token_shape",
]


