"""Compiled training and evaluation steps for any model, loss and optax optimiser.

    plain model:     step(params, opt_state, x, y)             -> (params, opt_state, metrics)
    stateful model:  step(params, state, opt_state, x, y, key) -> (params, state, opt_state, metrics)

are pure and jit-compiled; everything with side effects (data, logging, checkpoints) stays
outside them. Optimisers are optax's `GradientTransformation`s.

`microbatch` (None | "auto" | int, default "auto"): a plain model's batch is cut into chunks
(`jaxnn.microbatch`), so that on XLA:CPU the cost per image stays flat with the batch size
instead of rising past ~128 LeNet-5 images. Evaluation runs the chunks in a loop inside its
compiled step. Training, called with concrete arrays, runs either one program with the chunks
unrolled or one compiled call per call-sized chunk with the update in the last (`ChunkedStep`,
which picks by the number of calls); traced inside the caller's own `jit`, or compiled ahead
of time with `.lower`, it is the one program. "auto" splits by shape: the calls by the
largest array of the gradient pass (`microbatch.call_sizes`, `AUTO_CHUNK_BYTES`; LeNet-5:
≤ 557 images by reverse mode, ≤ 133 by the hand-written rule), the unrolled chunks of one
program or one call by `AUTO_UNROLL_BYTES` (≤ 32 and ≤ 24: a batch of 128 trains as 4 × 32,
≈ 0.9× the whole batch's time), evaluation by `AUTO_CHUNK_BYTES` (chunks of ≤ 557); None never
splits; an int sets the chunk size.
Results equal the whole-batch step's up to float32 rounding. A stateful model's training step
is never split ("auto" leaves it whole; an int raises ValueError) unless `stateful` lifted a
plain model (`model.lifted`: no state, no key), which splits like the plain one; evaluation
(train=False, each example on its own) splits either way.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxnn import microbatch as mb
from jaxnn.backprop import value_and_grad
from jaxnn.core import AnyLayer, fixed_state, is_stateful
from jaxnn.losses import Loss


def train_step(model: AnyLayer, loss: Loss, optimizer: optax.GradientTransformation,
               method: str = "autodiff", *, jit: bool = True, donate: bool = True,
               microbatch: int | str | None = "auto") -> Callable:
    """A step: W_{t+1} = W_t + optimizer.update(dJ/dW_t), the gradient from `method`
    ("autodiff" or "manual"); metrics = {"loss": J}. Signatures: the module docstring (a
    stateful model runs with train=True and returns its new state; `key` may be None for a
    model that draws no random numbers).

    With donate=True the old params, state and optimiser state buffers are reused for the
    new ones (do not read the arguments after the call).
    """
    if is_stateful(model) and model.lifted is not None and mb.check_splittable(model, microbatch):
        plain = partial(train_step, model.lifted, loss, optimizer, method, microbatch=microbatch)
        step_s = _with_state(plain(jit=False))
        if not jit:
            return step_s
        return LiftedStep(plain(jit=True, donate=donate),
                          jax.jit(step_s, donate_argnums=(0, 1, 2) if donate else ()))
    if mb.check_splittable(model, microbatch):
        grad_fn = mb.value_and_grad(model, loss, method, microbatch)
    else:
        grad_fn = value_and_grad(model, loss, method, jit=False)

    def update(params, opt_state, grads):
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    if is_stateful(model):
        def step_s(params, state, opt_state, x, y, key=None):
            (value, state), grads = grad_fn(params, state, x, y, key)
            params, opt_state = update(params, opt_state, grads)
            return params, state, opt_state, {"loss": value}
        return jax.jit(step_s, donate_argnums=(0, 1, 2) if donate else ()) if jit else step_s

    def step(params, opt_state, x, y):
        value, grads = grad_fn(params, x, y)
        params, opt_state = update(params, opt_state, grads)
        return params, opt_state, {"loss": value}

    if not jit:
        return step
    jitted = jax.jit(step, donate_argnums=(0, 1) if donate else ())
    if not mb.check_splittable(model, microbatch) or loss.reduction not in ("mean", "sum"):
        return jitted
    unrolled = {}

    def one_program(params, x):
        # Past one call: "auto" runs its calls (each unrolled inside); an int chunk size the
        # chunks unrolled unless the gradient pass stores more than the forward.
        if microbatch == "auto":
            return False
        key = (x.shape[1:], jnp.dtype(x.dtype), jnp.dtype(jax.tree.leaves(params)[0].dtype))
        if key not in unrolled:
            unrolled[key] = not mb.gradient_stores_more(model, params, x.shape[1:], x.dtype,
                                                        method=method)
        return unrolled[key]

    return ChunkedStep(jitted, mb.accumulating_step(model, loss, optimizer, method, microbatch,
                                                    donate=donate), one_program)


def _with_state(plain_step: Callable) -> Callable:
    """The stateful signature around a lifted plain model's step: its state `()` passes
    through, the key is unused."""
    def step_s(params, state, opt_state, x, y, key=None):
        params, opt_state, metrics = plain_step(params, opt_state, x, y)
        return params, state, opt_state, metrics
    return step_s


class LiftedStep:
    """The training step of a plain model that `stateful` lifted, in the stateful signature:
    called, the plain model's `ChunkedStep` picks how to run the batch (`form`, `chunks`);
    `lower`, `trace` and other `jax.jit` attributes are those of `jitted`, the one program."""

    def __init__(self, chunked: Callable, jitted: Callable):
        self.chunked, self.jitted = chunked, jitted

    def __call__(self, params, state, opt_state, x, y, key=None):
        params, opt_state, metrics = self.chunked(params, opt_state, x, y)
        return params, state, opt_state, metrics

    def __getattr__(self, name):  # only for names the instance lacks
        if name.startswith("__") or name in ("chunked", "jitted"):
            raise AttributeError(name)
        if name in ("form", "chunks"):
            return getattr(self.chunked, name)
        return getattr(self.jitted, name)


class ChunkedStep:
    """A plain model's training step that picks, per call, how to run a batch.

    - concrete arrays whose batch needs several calls (`microbatch.call_sizes`; with an int
      chunk size, only when the gradient pass holds a larger array per example than the
      forward, `microbatch.gradient_stores_more`: LeNet-5 by the hand-written chain rule): one
      compiled call per call-sized chunk, each unrolled in chunks of its own, gradients
      accumulated, the update in the last call (`microbatch.accumulating_step`);
    - otherwise (one call, or traced inside the caller's own `jit`/`grad`/`vmap`): the one
      compiled step, `jitted`, whose chunks (if any) are unrolled in its program.
    `form(params, x)` says which. Measured on LeNet-5 (benchmarks/README.md), per image
    against a batch of 128 (itself 4 unrolled chunks of 32), side by side: reverse mode 0.94×
    at 512 (one program of 16 chunks), 0.93× at 2048 (4 calls of 512); the hand-written rule
    1.04× at 512 and 0.95× at 2048 (calls of 128).

    Both give the whole-batch step's result up to float32 rounding. `lower`, `trace`,
    `eval_shape` and other `jax.jit` attributes are `jitted`'s: compiling ahead of time gets
    the one-program form.
    """

    def __init__(self, jitted: Callable, accumulate: Callable,
                 one_program: Callable = lambda params, x: False):
        self.jitted, self.accumulate, self._chunks = jitted, accumulate, accumulate.chunks
        self._one_program = one_program

    def form(self, params, x) -> str:
        """"one program" or "chunk by chunk": how a call with these concrete arrays runs."""
        if len(self.chunks(params, x)) == 1 or self._one_program(params, x):
            return "one program"
        return "chunk by chunk"

    def chunks(self, params, x) -> tuple[int, ...]:
        """The chunk sizes a call with this x would run (one entry: the one compiled step)."""
        return self._chunks(params, x)

    def __call__(self, params, opt_state, x, y):
        traced = any(isinstance(leaf, jax.core.Tracer)
                     for leaf in jax.tree.leaves((params, opt_state, x, y)))
        if traced or self.form(params, x) == "one program":
            return self.jitted(params, opt_state, x, y)
        return self.accumulate(params, opt_state, x, y)

    def __getattr__(self, name):  # only for names the instance lacks
        if name.startswith("__") or name in ("jitted", "accumulate", "_chunks", "_one_program"):
            raise AttributeError(name)  # e.g. while copying or unpickling, before __init__
        return getattr(self.jitted, name)


def eval_step(model: AnyLayer, loss: Loss | None = None, *, jit: bool = True,
              microbatch: int | str | None = "auto") -> Callable:
    """(params, x, labels) -> {"correct": #argmax hits, "loss": summed loss (if loss given)};
    a stateful model takes (params, state, x, labels) and runs with train=False (no key).

    Sums rather than means (`loss.total`, the sum of the loss's terms whatever its
    reduction), so batches of any size add up exactly over a dataset.
    No gradients are computed.
    """
    def metrics(logits, labels):
        out = {"correct": (jnp.argmax(logits, axis=-1) == labels).sum()}
        if loss is not None:
            if loss.total is None:
                raise ValueError(f"eval_step: loss {loss.name} has no `total` (the sum of its terms)")
            out["loss"] = loss.total(logits, labels)
        return out

    if is_stateful(model):
        if microbatch not in (None, "auto") and not (isinstance(microbatch, int) and microbatch > 0):
            raise ValueError(f"microbatch must be None, 'auto' or a positive int, got {microbatch!r}")

        def step_s(params, state, x, labels):
            # In eval every example depends only on itself (running statistics, no dropout),
            # so the model with its state held fixed splits like a plain one.
            plain = fixed_state(model, state, train=False)
            forward = plain.apply if microbatch is None else mb.apply(plain, microbatch)
            return metrics(forward(params, x), labels)
        return jax.jit(step_s) if jit else step_s

    forward = mb.apply(model, microbatch) if mb.check_splittable(model, microbatch) else model.apply

    def step(params, x, labels):
        return metrics(forward(params, x), labels)

    return jax.jit(step) if jit else step


__all__ = ["ChunkedStep", "LiftedStep", "eval_step", "train_step"]
