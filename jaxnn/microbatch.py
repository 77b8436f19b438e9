"""Large batches as micro-batches: chunks inside one compiled step.

On XLA:CPU the cost per image of LeNet-5 rises past a batch of ~128 (see benchmarks/README.md,
"Cost per image against the batch size"): the same program on bigger operands, whose buffers
past that size are mapped afresh on every call (37.5 page faults per image at batch 2048, none
at 128, measured when reverse mode still stored conv1's stacked windows, 25 · 784 floats per
image; the hand-written chain rule still does). They come from glibc's
malloc in a thread's own arena, which hands a block too large for its 64 MiB heaps to mmap and
back to the kernel on free, so every call first-touches zeroed pages: inferred from
`python -m benchmarks.batch_cliff --malloc`, where only MALLOC_ARENA_MAX=1 (one arena) with
MALLOC_MMAP_MAX_=0 (no mmap) together remove the faults, one arena for all threads costing
20% at batch 128. Chunks keep each op, and each call's buffers, at a chunk's size. A forward
pass alone (`apply`) loops over the chunks with `lax.map`: one chunk's buffers, reused, so
evaluation costs per image at 2048 no more than at 128. A gradient
unrolls the chunks in Python, since in a `lax.scan` the backward convolutions run 2× slower on
XLA:CPU (jax#12868); that takes 10–20% off a large training batch, not the whole cliff (the
unrolled program still has buffers for every chunk). `accumulating_step` makes one compiled
call per call-sized chunk instead (`call_sizes`), each call unrolled in small chunks of its
own, and a batch of 2048 trains at a small batch's cost per image; `jaxnn.train_step` runs it
for concrete arrays whose batch needs more than one call, and the one unrolled program
otherwise.

    x (N, ...) -> chunks x[0:n_0], x[n_0:n_0+n_1], ...      sizes from `chunk_sizes(N, microbatch)`

Gradient (exact for any loss, whatever its reduction, since the loss sees the whole batch):

    y_c, pullback_c = forward of chunk c                (y_c: (n_c, ...))
    J, dJ/dy        = loss on y = concat(y_c), targets  (dJ/dy split back into dy_c)
    dJ/dW           = Σ_c pullback_c(dy_c)

so the result equals the plain step's up to float32 rounding (the sum over the batch is
taken per chunk, then over chunks). method="autodiff" pulls back with `jax.vjp` of
`model.apply`, method="manual" with the layers' hand-written `backward`.

`microbatch`: None (never split), "auto" (split by shape, see `chunk_sizes`) or an int
(images per chunk). With "auto" a gradient is split twice: into calls of `accumulating_step`
whose largest array fits AUTO_CHUNK_BYTES (`call_sizes`), and inside one program or one call
into unrolled chunks by AUTO_UNROLL_BYTES (small chunks, unrolled, ran faster per image than
one whole chunk here: measured in benchmarks/README.md).
Only plain (stateless) layers are split, and plain layers that `stateful` lifted: a stateful
model (BatchNorm's batch statistics, a Dropout key per call) would compute something else per
chunk, so "auto" leaves it whole and an int raises `ValueError`.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxnn import backprop
from jaxnn.backprop import check_method
from jaxnn.core import AnyLayer, Layer, is_stateful
from jaxnn.losses import Loss

AUTO_CHUNK_BYTES = 10 * 2**20
""""auto" for a forward pass keeps its largest intermediate array of one chunk at or under
this many bytes (LeNet-5: conv1's output, 6 · 784 floats = 18,816 bytes per image: chunks of
≤ 557, so batch 1000 runs as 2 chunks of 500 and 2048 as 4 of 512)."""

AUTO_UNROLL_BYTES = 44 * 2**20
""""auto" for the chunks of one compiled gradient pass (`value_and_grad`, unrolled): the sum of
a chunk's batch-sized arrays (`gradient_pass_bytes`) at or under this many bytes. LeNet-5:
chunks of ≤ 32 by reverse mode, ≤ 24 by the hand-written chain rule, so a batch of 128 runs as
4 chunks of 32 (or 6 of 21–22) and a call of 512 as 16 of 32. Calibrated on LeNet-5 here
(benchmarks/README.md, "Small chunks, unrolled"): the experiment loop's step of 128 in chunks
of 64 / 32 / 16 cost 0.95 / 0.88 / 0.92× the whole batch's by reverse mode; in chunks of 32,
0.84× by the hand-written rule."""

# A call of `accumulating_step` ("auto") keeps the largest batch-sized array of its gradient
# pass within AUTO_CHUNK_BYTES, as a forward chunk does: LeNet-5 by reverse mode ≤ 557 images
# (conv1's output), by the hand-written rule ≤ 133 (its stacked windows, 78,400 bytes per image).


def largest_intermediate_bytes(model: Layer, params, example_shape, dtype=jnp.float32, *,
                               gradient: bool = False, method: str = "autodiff") -> int:
    """Bytes per example of the largest batch-sized array in `model.apply`'s forward, or with
    gradient=True in the pass computing its gradient with respect to the parameters by
    `method` (which may store what the forward alone does not: with "manual", LeNet-5's
    conv1 windows, 78,400 bytes per image against its output's 18,816).

    The program is traced (nothing computed) at batch 2 and batch 4, every equation's outputs
    included, nested ones too (`jit`, `custom_jvp`); an array's bytes per example are its
    growth from one trace to the other over 2, so arrays the size of the weights count for nothing.
    """
    two, four = _traced_bytes(model, params, example_shape, dtype, gradient, method)
    if len(two) == len(four):
        return max(((b - a) // 2 for a, b in zip(two, four)), default=0)
    return max((max(four, default=0) - max(two, default=0)) // 2, 0)


def gradient_pass_bytes(model: Layer, params, example_shape, dtype=jnp.float32, *,
                        method: str = "autodiff") -> int:
    """Bytes per example of all the batch-sized arrays of the pass computing the gradient with
    respect to the parameters by `method`, summed (traced as `largest_intermediate_bytes`):
    an upper bound on what the pass holds at once, since XLA fuses some of them away."""
    two, four = _traced_bytes(model, params, example_shape, dtype, True, method)
    return max((sum(four) - sum(two)) // 2, 0)


def gradient_stores_more(model: Layer, params, example_shape, dtype=jnp.float32, *,
                         method: str = "autodiff") -> bool:
    """Whether the gradient pass by `method` holds a larger array per example than the forward
    pass alone (`largest_intermediate_bytes` with gradient=True against False): LeNet-5's
    hand-written chain rule does (its stacked windows, 78,400 bytes per image against the
    forward's 18,816), reverse mode does not. With an int `microbatch`, `jaxnn.train_step`
    runs a batch that splits as one program with the chunks unrolled when it does not, else
    one call per chunk (`accumulating_step`): unrolled, the windows of every chunk are held at
    once. ("auto" goes by `call_sizes` instead.)"""
    grad = largest_intermediate_bytes(model, params, example_shape, dtype, gradient=True, method=method)
    return grad > largest_intermediate_bytes(model, params, example_shape, dtype)


def _traced_bytes(model, params, example_shape, dtype, gradient, method):
    """Bytes of every equation's outputs of the program at batch 2 and at batch 4."""
    def program(p, x):
        if not gradient:
            return model.apply(p, x)
        if check_method(method) == "autodiff":
            return jax.grad(lambda p: jnp.sum(model.apply(p, x)))(p)
        y, residuals = model.forward(p, x)
        return model.backward(p, residuals, jnp.ones_like(y))[0]

    def sizes(batch) -> list[int]:
        closed = jax.make_jaxpr(program)(params, jax.ShapeDtypeStruct((batch, *example_shape), dtype))
        return list(_out_bytes(closed.jaxpr))

    # Batches 2 and 4, not 1 and 2: at batch 1 some ops trace differently (size-1 axes), and
    # the two programs must pair equation by equation.
    return sizes(2), sizes(4)


def _out_bytes(jaxpr):
    """Bytes of every equation's outputs, in order, descending into nested jaxprs."""
    for eqn in jaxpr.eqns:
        for var in eqn.outvars:
            aval = getattr(var, "aval", None)
            if hasattr(aval, "shape") and hasattr(aval, "dtype"):
                yield math.prod(aval.shape) * aval.dtype.itemsize
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    yield from _out_bytes(inner)


def chunk_sizes(batch: int, microbatch: int | str | None, per_example_bytes: int = 0,
                budget: int = AUTO_CHUNK_BYTES) -> tuple[int, ...]:
    """Sizes of the chunks a batch of `batch` examples is cut into, in order; they sum to batch.

    microbatch=None: (batch,). An int m: ceil(batch / m) chunks. "auto": the fewest chunks
    whose `per_example_bytes` per example fit in `budget` bytes (AUTO_CHUNK_BYTES for the
    largest array of a pass, AUTO_UNROLL_BYTES for a gradient pass's sum).
    Chunks are as equal as possible (sizes differ by at most one), so at most two chunk
    shapes are compiled: 1000 with m = 128 gives 8 chunks of 125.
    """
    if microbatch is None:
        return (batch,)
    if microbatch == "auto":
        per_chunk = max(1, budget // max(1, per_example_bytes))
    elif isinstance(microbatch, int) and not isinstance(microbatch, bool) and microbatch > 0:
        per_chunk = microbatch
    else:
        raise ValueError(f"microbatch must be None, 'auto' or a positive int, got {microbatch!r}")
    count = max(1, math.ceil(batch / per_chunk))
    base, extra = divmod(batch, count)
    return tuple(base + 1 if i < extra else base for i in range(count))


def check_splittable(model: AnyLayer, microbatch) -> bool:
    """Whether to split: True for a plain Layer (or one `stateful` lifted, `model.lifted`)
    unless microbatch is None; False for a `StatefulLayer` with microbatch None or "auto"; a
    stateful model with an int raises ValueError naming it."""
    if not is_stateful(model) or model.lifted is not None:
        return microbatch is not None
    if microbatch not in (None, "auto"):
        raise ValueError(f"{model.name}: micro-batching a stateful model changes what it computes "
                         f"(batch statistics, dropout keys per chunk); got microbatch={microbatch!r}, "
                         "use None or 'auto' (which leaves it whole)")
    return False


def _plan(model: Layer, microbatch, params, x, gradient: bool = False,
          method: str = "autodiff") -> tuple[int, ...]:
    """Chunk sizes: of a forward pass, or with gradient=True of one gradient program's
    unrolled chunks (`value_and_grad`)."""
    if microbatch != "auto":
        return chunk_sizes(x.shape[0], microbatch)
    if gradient:
        return chunk_sizes(x.shape[0], "auto", gradient_pass_bytes(
            model, params, x.shape[1:], x.dtype, method=method), AUTO_UNROLL_BYTES)
    return chunk_sizes(x.shape[0], "auto", largest_intermediate_bytes(model, params, x.shape[1:], x.dtype))


def call_sizes(model: Layer, microbatch, params, x, method: str = "autodiff") -> tuple[int, ...]:
    """The sizes of `accumulating_step`'s calls for x: an int m gives chunks of m, one per
    call; "auto" the fewest calls whose gradient pass's largest batch-sized array
    (`largest_intermediate_bytes`, gradient=True) fits in AUTO_CHUNK_BYTES, each then cut into
    unrolled chunks by AUTO_UNROLL_BYTES. LeNet-5 at batch 2048: 4 calls of 512 by reverse
    mode, 16 of 128 by the hand-written rule."""
    if microbatch != "auto":
        return chunk_sizes(x.shape[0], microbatch)
    return chunk_sizes(x.shape[0], "auto", largest_intermediate_bytes(
        model, params, x.shape[1:], x.dtype, gradient=True, method=method), AUTO_CHUNK_BYTES)


def _split(x, sizes):
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return [x[s:s + n] for s, n in zip(starts, sizes)]


def _tree_sum(trees):
    return jax.tree.map(lambda *leaves: sum(leaves[1:], leaves[0]), *trees)


def apply(model: Layer, microbatch: int | str | None = "auto") -> Callable:
    """(params, x (N, ...)) -> model.apply(params, x) (N, ...), computed chunk by chunk.

    With m the largest of `chunk_sizes` and k = N // m, the first k·m examples go through
    `lax.map` over (k, m, ...) and the last N - k·m through one more call. For a forward
    pass alone the loop is the faster form and compiles once (the backward is not: see
    `value_and_grad`). Not jitted (call it inside `jax.jit`).
    """
    check_splittable(model, microbatch)

    def chunked_apply(params, x):
        m = _plan(model, microbatch, params, x)[0]
        k, n = x.shape[0] // m, x.shape[0]
        if k <= 1 and n == m:
            return model.apply(params, x)
        head = lax.map(lambda xc: model.apply(params, xc), x[:k * m].reshape(k, m, *x.shape[1:]))
        head = head.reshape(k * m, *head.shape[2:])
        return head if k * m == n else jnp.concatenate([head, model.apply(params, x[k * m:])])

    return chunked_apply


def value_and_grad(model: Layer, loss: Loss, method: str = "autodiff",
                   microbatch: int | str | None = "auto") -> Callable:
    """(params, x (N, ...), targets (N, ...)) -> (J, dJ/dparams), chunk by chunk (formula:
    the module docstring). The same values as `backprop.value_and_grad(model, loss, method)`
    up to float32 rounding. Not jitted (call it inside `jax.jit`)."""
    check_method(method)
    check_splittable(model, microbatch)

    def pullbacks(params, chunks):
        ys, backs = [], []
        for xc in chunks:
            if method == "autodiff":
                yc, back = jax.vjp(lambda p, xc=xc: model.apply(p, xc), params)
                backs.append(lambda dy, back=back: back(dy)[0])
            else:
                yc, residuals = model.forward(params, xc)
                backs.append(lambda dy, r=residuals: model.backward(params, r, dy)[0])
            ys.append(yc)
        return ys, backs

    def chunked_value_and_grad(params, x, targets):
        sizes = _plan(model, microbatch, params, x, gradient=True, method=method)
        ys, backs = pullbacks(params, _split(x, sizes))
        y = ys[0] if len(ys) == 1 else jnp.concatenate(ys)
        if method == "autodiff":
            value, dy = jax.value_and_grad(loss.apply)(y, targets)
        else:
            value, res_loss = loss.forward(y, targets)
            dy = loss.backward(res_loss, jnp.ones((), value.dtype))
        return value, _tree_sum([back(dyc) for back, dyc in zip(backs, _split(dy, sizes))])

    return chunked_value_and_grad


def accumulating_step(model: Layer, loss: Loss, optimizer, method: str = "autodiff",
                      microbatch: int | str = "auto", *, donate: bool = True) -> Callable:
    """A training step (params, opt_state, x, y) -> (params, opt_state, {"loss": J}) that runs
    one compiled call per chunk, accumulating w_c · dJ_c/dW, the last call also applying the
    optimiser update:

        w_c = n_c / N for a loss with reduction "mean", 1 for "sum";  J = Σ_c w_c J_c

    Every call works at a chunk's size, so a batch of 2048 costs per image what a small batch
    does (the unrolled chunks of `value_and_grad` keep buffers for all of them; see the module
    docstring). Each call takes the whole batch and cuts its chunk out on the device
    (`lax.dynamic_slice`, the start a cached device scalar), so a chunk costs one dispatch
    (a trivial jitted call with a step's arguments: ≈ 0.2 ms, against ≈ 8.5 ms of work for 128
    LeNet-5 images) and no host copy. The step is a
    Python function calling compiled ones (`jax.jit` of it would unroll the loop again); it is
    what `train_step(..., microbatch="auto")` runs for a batch that splits, when called with
    concrete arrays. Equal to the whole-batch step up to float32 rounding.
    """
    check_method(method)
    if is_stateful(model):
        raise ValueError(f"{model.name}: accumulating_step takes a plain (stateless) model")
    if loss.reduction not in ("mean", "sum"):
        raise ValueError(f"{loss.name}: accumulating chunks needs reduction 'mean' or 'sum', "
                         f"got {loss.reduction!r}")
    # Each call's chunk is itself cut into unrolled chunks ("auto": AUTO_UNROLL_BYTES).
    grad_fn = (value_and_grad(model, loss, method, "auto") if microbatch == "auto"
               else backprop.value_and_grad(model, loss, method, jit=False))

    def chunk_grad(params, x, y, start, weight, n):
        v, g = grad_fn(params, lax.dynamic_slice_in_dim(x, start, n),
                       lax.dynamic_slice_in_dim(y, start, n))
        return jax.tree.map(lambda b: weight * b, g), weight * v

    def update(params, opt_state, grads):
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    @partial(jax.jit, static_argnums=5)
    def first(params, x, y, start, weight, n):
        return chunk_grad(params, x, y, start, weight, n)

    @partial(jax.jit, static_argnums=7, donate_argnums=(1, 2))
    def add(params, grads, value, x, y, start, weight, n):
        g, v = chunk_grad(params, x, y, start, weight, n)
        return jax.tree.map(jnp.add, grads, g), value + v

    @partial(jax.jit, static_argnums=8, donate_argnums=(0, 1) if donate else ())
    def last(params, opt_state, grads, value, x, y, start, weight, n):
        g, v = chunk_grad(params, x, y, start, weight, n)
        params, opt_state = update(params, opt_state, jax.tree.map(jnp.add, grads, g))
        return params, opt_state, {"loss": value + v}

    @partial(jax.jit, donate_argnums=(0, 1) if donate else ())
    def whole(params, opt_state, x, y):
        value, grads = grad_fn(params, x, y)
        params, opt_state = update(params, opt_state, grads)
        return params, opt_state, {"loss": value}

    plans = {}

    def plan(params, x):
        """[(n_c, start_c as a device int32, w_c as a device scalar)] for x's shape, cached."""
        key = (x.shape, jnp.dtype(x.dtype), jnp.dtype(jax.tree.leaves(params)[0].dtype))
        if key not in plans:
            sizes = call_sizes(model, microbatch, params, x, method)
            starts = [sum(sizes[:i]) for i in range(len(sizes))]
            plans[key] = [(n, jnp.asarray(s, jnp.int32),
                           jnp.asarray(n / x.shape[0] if loss.reduction == "mean" else 1.0, key[2]))
                          for n, s in zip(sizes, starts)]
        return plans[key]

    def step(params, opt_state, x, y):
        chunks = plan(params, x)
        if len(chunks) == 1:
            return whole(params, opt_state, x, y)
        x, y = jnp.asarray(x), jnp.asarray(y)  # on the device once, not once per chunk
        (n, start, weight), *middle, (n_last, start_last, weight_last) = chunks
        grads, value = first(params, x, y, start, weight, n)
        for n, start, weight in middle:
            grads, value = add(params, grads, value, x, y, start, weight, n)
        return last(params, opt_state, grads, value, x, y, start_last, weight_last, n_last)

    step.chunks = lambda params, x: tuple(n for n, _, _ in plan(params, x))
    return step


__all__ = ["AUTO_CHUNK_BYTES", "AUTO_UNROLL_BYTES", "accumulating_step", "apply", "call_sizes",
           "check_splittable", "chunk_sizes",
           "gradient_pass_bytes", "gradient_stores_more", "largest_intermediate_bytes",
           "value_and_grad"]
