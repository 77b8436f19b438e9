"""Chunks: a batch cut into pieces inside one compiled step, as an explicit option.

A chunk size is a speed setting for one machine, never a default: `chunk=None` runs the
batch as given. Whether chunks pay depends on the backend and the model; a caller that wants
them chooses the size (the LeNet-5 experiment picks its own per backend; the measurements are
in benchmarks/README.md).

    x (N, ...) -> chunks x[0:n_0], x[n_0:n_0+n_1], ...      sizes from `chunk_sizes(N, chunk)`

Gradient, exact for any loss (the loss sees the whole batch); the chunks are unrolled in
Python, one program:

    y_c, pullback_c = forward of chunk c                (y_c: (n_c, ...))
    J, dJ/dy        = loss on y = concat(y_c), targets  (dJ/dy split back into dy_c)
    dJ/dW           = Σ_c pullback_c(dy_c)

so the result equals the whole batch's up to float rounding. method="autodiff" pulls back
with `jax.vjp` of `model.apply`, method="manual" with the layers' hand-written `backward`.
Chunk c draws its random numbers from fold_in(key, c). A model whose state changes in
training (BatchNorm's batch statistics) would compute per-chunk statistics, so its gradient
is not chunked: `value_and_grad` raises ValueError naming the model.

A forward pass in eval mode (`predict`) loops over the chunks with `lax.map`: one chunk's
buffers, reused. Gradient accumulation across several calls (a batch larger than memory) is
`optax.MultiSteps(optimizer, k)` around the optimiser, with k calls of the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from jaxnn.backprop import check_method
from jaxnn.core import Layer, no_state
from jaxnn.losses import Loss


def check_chunk(chunk) -> int | None:
    """`chunk` must be None or a positive int (examples per chunk)."""
    if chunk is not None and (not isinstance(chunk, int) or isinstance(chunk, bool) or chunk < 1):
        raise ValueError(f"chunk must be None or a positive int (examples per chunk), got {chunk!r}")
    return chunk


def chunk_sizes(batch: int, chunk: int | None) -> tuple[int, ...]:
    """Sizes of the chunks a batch of `batch` examples is cut into, in order; they sum to
    batch. None: (batch,). An int m: ceil(batch / m) chunks as equal as possible (sizes differ
    by at most one, so at most two shapes compile): 1000 with m = 128 gives 8 chunks of 125."""
    m = check_chunk(chunk)
    if m is None:
        return (batch,)
    count = max(1, math.ceil(batch / m))
    base, extra = divmod(batch, count)
    return tuple(base + 1 if i < extra else base for i in range(count))


def _split(x, sizes):
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [jax.tree.map(lambda a, s=s, n=n: a[s:s + n], x) for s, n in zip(starts, sizes)]


def _tree_sum(trees):
    return jax.tree.map(lambda *leaves: sum(leaves[1:], leaves[0]), *trees)


def value_and_grad(model: Layer, loss: Loss, method: str = "autodiff", chunk: int | None = None,
                   *, train: bool = True) -> Callable:
    """(params, state, x (N, ...), targets (N, ...), key=None) -> ((J, new_state), dJ/dparams),
    chunk by chunk (formula: the module docstring); the signature of
    `jaxnn.value_and_grad`. Not jitted (call it inside `jax.jit`)."""
    check_method(method)
    check_chunk(chunk)

    def pullback(params, state, xc, key):
        if method == "autodiff":
            yc, back, new_state = jax.vjp(
                lambda p: model.apply(p, state, xc, key=key, train=train), params, has_aux=True)
            return yc, lambda dy: back(dy)[0], new_state
        yc, residuals, new_state = model.forward(params, state, xc, key=key, train=train)
        return yc, lambda dy: model.backward(params, residuals, dy)[0], new_state

    def chunked_value_and_grad(params, state, x, targets, key=None):
        sizes = chunk_sizes(jax.tree.leaves(x)[0].shape[0], chunk)
        if len(sizes) > 1 and train and not no_state(state):
            raise ValueError(f"{model.name}: a model with state (batch statistics) computes "
                             f"something else chunk by chunk; train it with chunk=None")
        ys, backs = [], []
        for c, xc in enumerate(_split(x, sizes)):
            kc = key if key is None or len(sizes) == 1 else jax.random.fold_in(key, c)
            yc, back, new_state = pullback(params, state, xc, kc)
            ys.append(yc)
            backs.append(back)
        y = ys[0] if len(ys) == 1 else jnp.concatenate(ys)
        if method == "autodiff":
            value, dy = jax.value_and_grad(loss.apply)(y, targets)
        else:
            value, res_loss = loss.forward(y, targets)
            dy = loss.backward(res_loss, jnp.ones((), value.dtype))
        dys = [dy] if len(sizes) == 1 else _split(dy, sizes)
        return (value, new_state), _tree_sum([back(dyc) for back, dyc in zip(backs, dys)])

    return chunked_value_and_grad


def predict(model: Layer, chunk: int | None = None) -> Callable:
    """(params, state, x (N, ...)) -> y (N, ...): the model in eval mode (train=False, state
    held fixed), chunk by chunk. With m the largest chunk and k = N // m, the first k·m
    examples go through `lax.map` over (k, m, ...) and the last N − k·m through one more call.
    Not jitted (call it inside `jax.jit`)."""
    check_chunk(chunk)

    def run(params, state, x):
        return model.apply(params, state, x, train=False)[0]

    def chunked_predict(params, state, x):
        n = x.shape[0]
        m = chunk_sizes(n, chunk)[0]
        k = n // m
        if k <= 1 and n == m:
            return run(params, state, x)
        head = lax.map(lambda xc: run(params, state, xc), x[:k * m].reshape(k, m, *x.shape[1:]))
        head = head.reshape(k * m, *head.shape[2:])
        return head if k * m == n else jnp.concatenate([head, run(params, state, x[k * m:])])

    return chunked_predict


__all__ = ["check_chunk", "chunk_sizes", "predict", "value_and_grad"]
