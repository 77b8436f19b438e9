"""Data-parallel training on a device mesh, with XLA's SPMD partitioner or an explicit psum.

A 1-D `Mesh` with axis "data" spans the devices (of every process). A global batch (N, ...) is
split along axis 0 into equal shards, one per device; parameters and optimiser state are
replicated, or split by a rule the caller passes. Two ways to reduce the gradients:

  train_step(...)            jaxnn's pure step under `jax.jit` with shardings. Each device
                             computes dJ_d/dW on its shard and XLA inserts the all-reduce:
                             dJ/dW = (1/D) Σ_d dJ_d/dW, with J the mean loss over the batch.
  shard_map_train_step(...)  the same step written per device with `jax.shard_map`; the
                             all-reduce is visible: one `lax.psum` over the flattened gradient
                             vector, divided by D. With equal shards, the mean of the D shard
                             means is the batch mean, so both give the gradient of one device.

Both work with method "autodiff" or "manual" and with `compute_dtype="bfloat16"` (see
`jaxnn.train.precision`). A batch that D does not divide raises `ShardingError` before anything
runs; nothing is padded.

On one CPU, `--xla_force_host_platform_device_count=D` makes D host devices sharing one
thread pool. Steps dispatched far ahead of their completion can deadlock there in the
all-reduce, so on such a mesh the steps returned here keep at most two steps in flight and
end the process with a one-line message if a step never finishes (`jaxnn.train.distributed.Pacer`).
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np
import optax
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnn import backprop, training
from jaxnn.core import AnyLayer, Layer, is_stateful
from jaxnn.train.distributed import Pacer, needs_pacing
from jaxnn.losses import Loss
from jaxnn.train.precision import mixed_precision

DATA_AXIS = "data"

Rule = Callable[[str, tuple, int], P]  # (leaf path, leaf shape, device count) -> spec


class ShardingError(ValueError):
    """A batch, device count or parameter rule that does not fit the mesh."""


def make_mesh(num_devices: int | None = None, *, axis: str = DATA_AXIS) -> Mesh:
    """A 1-D mesh over the first `num_devices` of `jax.devices()` (default: all, every process)."""
    devices = jax.devices()
    if num_devices is None:
        num_devices = len(devices)
    if not 1 <= num_devices <= len(devices):
        raise ShardingError(f"asked for {num_devices} devices but {len(devices)} are available "
                            f"({devices[0].platform}); on CPU, more host devices need XLA_FLAGS="
                            f"--xla_force_host_platform_device_count=N set before jax starts")
    if num_devices % jax.process_count():
        raise ShardingError(f"{num_devices} devices do not split over {jax.process_count()} "
                            f"processes")
    return Mesh(np.array(devices[:num_devices]), (axis,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Axis 0 split over the mesh: device d holds rows [d·N/D, (d+1)·N/D)."""
    return NamedSharding(mesh, P(mesh.axis_names[0]))


def replicated(mesh: Mesh) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh, P())


def check_batch(global_batch: int, mesh: Mesh) -> None:
    """Raise ShardingError unless the mesh's device count divides `global_batch`."""
    d = mesh.size
    if global_batch % d:
        lower, upper = (global_batch // d) * d, (global_batch // d + 1) * d
        hint = f"{lower} or {upper}" if lower else f"{upper}"
        raise ShardingError(f"a batch of {global_batch} does not split over {d} devices; "
                            f"use a multiple of {d} (e.g. {hint})")


def shard_batch(mesh: Mesh, *arrays):
    """Global arrays sharded along axis 0 from this process's rows of each array.

    Each process passes its own consecutive part of the global batch (all of it in a
    single-process run); the global batch is the processes' parts in process order.
    """
    sharding = batch_sharding(mesh)
    out = []
    for a in arrays:
        a = np.asarray(a)
        global_shape = (a.shape[0] * jax.process_count(), *a.shape[1:])
        check_batch(global_shape[0], mesh)
        out.append(jax.make_array_from_process_local_data(sharding, a, global_shape))
    return out[0] if len(out) == 1 else tuple(out)


def shard_largest_axis(min_size: int = 1 << 14) -> Rule:
    """A rule: leaves with at least `min_size` elements are split along their largest axis
    that the device count divides (an FSDP / ZeRO-3 layout); smaller ones are replicated.

    Called as `rule(path, shape, num_devices)`; the partitioner then all-gathers each
    weight where it is used and reduce-scatters its gradient.
    """
    def rule(path: str, shape: tuple, num_devices: int) -> P:
        if int(np.prod(shape, dtype=np.int64)) < min_size:
            return P()
        for axis in sorted(range(len(shape)), key=lambda a: -shape[a]):
            if shape[axis] % num_devices == 0:
                return P(*([None] * axis), DATA_AXIS)
        return P()
    return rule


def tree_shardings(tree, mesh: Mesh, rule: Rule | None = None):
    """A NamedSharding per leaf of `tree` (arrays or ShapeDtypeStructs): replicated, or `rule`'s."""
    if rule is None:
        return jax.tree.map(lambda _: replicated(mesh), tree)

    def one(path, leaf):
        spec = rule(jax.tree_util.keystr(path), tuple(leaf.shape), mesh.size)
        for axis, name in enumerate(spec):
            if name is not None and leaf.shape[axis] % mesh.size:
                raise ShardingError(f"rule splits {jax.tree_util.keystr(path)} of shape "
                                    f"{tuple(leaf.shape)} along axis {axis}, which {mesh.size} "
                                    f"devices do not divide")
        return NamedSharding(mesh, spec)
    return jax.tree_util.tree_map_with_path(one, tree)


def put(tree, shardings):
    """`tree` on the mesh with `shardings` (one Sharding for every leaf, or a tree of them).

    Leaves already placed so come back as they are; others go through the host, so a host
    value must be the same on every process.
    """
    if isinstance(shardings, jax.sharding.Sharding):
        shardings = jax.tree.map(lambda _: shardings, tree)

    def one(leaf, sharding):
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf
        if jax.dtypes.issubdtype(getattr(leaf, "dtype", None), jax.dtypes.prng_key):
            return jax.random.wrap_key_data(one(jax.random.key_data(leaf), sharding),
                                            impl=jax.random.key_impl(leaf))
        host = np.asarray(leaf)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])
    return jax.tree.map(one, tree, shardings)


def to_host(tree):
    """numpy copies of a pytree of replicated or sharded global arrays (every process gets all)."""
    def one(leaf):
        if leaf.is_fully_addressable or leaf.is_fully_replicated:
            return np.asarray(leaf)
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(leaf, tiled=True))
    return jax.tree.map(one, tree)


def _model(model: AnyLayer, compute_dtype) -> AnyLayer:
    return model if compute_dtype is None else mixed_precision(model, compute_dtype)


def _checked(jitted, mesh: Mesh, batch_argnums: tuple[int, ...], pace: bool | None,
             state: dict):
    """`jitted` with the batch checked first (so the error is ours, not the partitioner's),
    the state arguments (`state`: argnum -> shardings) placed as the step returns them (so
    a second call does not compile again), and, for CPU host devices (or pace=True), at most
    two steps in flight (`Pacer`)."""
    pacer = Pacer(depth=1) if (needs_pacing(mesh) if pace is None else pace) else None

    def prepare(args):
        for i in batch_argnums:
            check_batch(args[i].shape[0], mesh)
        return [put(a, state[i]) if i in state else a for i, a in enumerate(args)]

    def step(*args):
        out = jitted(*prepare(args))
        if pacer is not None:
            pacer(out[-1] if isinstance(out, tuple) else out)  # the metrics: never donated
        return out

    def lower(*args):
        return jitted.lower(*prepare(args))

    step.lower, step.mesh, step.__doc__ = lower, mesh, jitted.__doc__
    return step


def state_shardings(mesh: Mesh, params=None, optimizer: optax.GradientTransformation | None = None,
                    rule: Rule | None = None):
    """(param shardings, optimiser-state shardings); both replicated when `rule` is None."""
    if rule is None:
        return replicated(mesh), replicated(mesh)
    if params is None:
        raise ShardingError("a sharding rule needs `params` (arrays or ShapeDtypeStructs)")
    opt_shape = jax.eval_shape(optimizer.init, params) if optimizer is not None else None
    return tree_shardings(params, mesh, rule), tree_shardings(opt_shape, mesh, rule)


def train_step(model: AnyLayer, loss: Loss, optimizer: optax.GradientTransformation,
               method: str = "autodiff", *, mesh: Mesh, params=None, rule: Rule | None = None,
               compute_dtype=None, donate: bool = True, pace: bool | None = None) -> Callable:
    """`jaxnn.train_step` on the mesh: (params, opt_state, x, y) -> (params, opt_state, metrics),
    or for a stateful model (params, state, opt_state, x, y, key) -> (params, state, opt_state,
    metrics), its state (e.g. BatchNorm statistics, over the global batch) replicated.

    x, y: global (N, ...) arrays, N divisible by the device count (numpy arrays are placed by
    jit; `shard_batch` places them without a host round trip). params and opt_state come back
    with the shardings they went in with: replicated, or `rule`'s (which needs `params`).
    compute_dtype: e.g. "bfloat16" for bf16 compute with float32 master params.
    pace: wait for step k-1 after dispatching step k (`jaxnn.train.distributed.Pacer`); the default
    does so exactly when the mesh has several CPU devices in this process.
    """
    step = training.train_step(_model(model, compute_dtype), loss, optimizer, method, jit=False)
    p_sh, o_sh = state_shardings(mesh, params, optimizer, rule)
    b, rep = batch_sharding(mesh), replicated(mesh)
    if is_stateful(model):  # (params, model_state, opt_state, x, y, key); the state replicated
        jitted = jax.jit(step, in_shardings=(p_sh, rep, o_sh, b, b, rep),
                         out_shardings=(p_sh, rep, o_sh, rep),
                         donate_argnums=(0, 1, 2) if donate else ())
        return _checked(jitted, mesh, (3, 4), pace, {0: p_sh, 1: rep, 2: o_sh, 5: rep})
    jitted = jax.jit(step, in_shardings=(p_sh, o_sh, b, b), out_shardings=(p_sh, o_sh, rep),
                     donate_argnums=(0, 1) if donate else ())
    return _checked(jitted, mesh, (2, 3), pace, {0: p_sh, 1: o_sh})


def eval_step(model: AnyLayer, loss: Loss | None = None, *, mesh: Mesh, params=None,
              rule: Rule | None = None, compute_dtype=None, pace: bool | None = None
              ) -> Callable:
    """`jaxnn.eval_step` on the mesh: (params, x, labels) -> {"correct", "loss"} summed over N;
    (params, state, x, labels) for a stateful model."""
    step = training.eval_step(_model(model, compute_dtype), loss, jit=False)
    p_sh, _ = state_shardings(mesh, params, None, rule)
    b, rep = batch_sharding(mesh), replicated(mesh)
    if is_stateful(model):  # (params, model_state, x, labels)
        jitted = jax.jit(step, in_shardings=(p_sh, rep, b, b), out_shardings=rep)
        return _checked(jitted, mesh, (2, 3), pace, {0: p_sh, 1: rep})
    jitted = jax.jit(step, in_shardings=(p_sh, b, b), out_shardings=rep)
    return _checked(jitted, mesh, (1, 2), pace, {0: p_sh})


def shard_map_train_step(model: Layer, loss: Loss, optimizer: optax.GradientTransformation,
                         method: str = "manual", *, mesh: Mesh, compute_dtype=None,
                         donate: bool = True, pace: bool | None = None) -> Callable:
    """The data-parallel step written per device, the all-reduce explicit.

    On device d, with its shard (x_d, y_d) of N/D examples and replicated params W:
        J_d, g_d = value_and_grad(W, x_d, y_d)            (method: "manual" or "autodiff")
        g        = psum(ravel(g_d), "data") / D           (one all-reduce of every gradient)
        J        = psum(J_d, "data") / D
        W, s     = optimizer step on g                    (identical on every device)
    Same signature and results as `train_step` with replicated params.
    """
    if is_stateful(model):
        raise ShardingError(f"shard_map_train_step takes a plain model; {model.name} is stateful "
                            f"(use train_step)")
    axis = mesh.axis_names[0]
    grad_fn = backprop.value_and_grad(_model(model, compute_dtype), loss, method, jit=False)

    def per_device(params, opt_state, x, y):
        # A device-varying copy of the params: without it, autodiff would differentiate through
        # shard_map's implicit broadcast of the replicated params and insert the psum itself.
        value, grads = grad_fn(jax.lax.pcast(params, axis, to="varying"), x, y)
        flat, unravel = ravel_pytree(grads)
        grads = unravel(jax.lax.psum(flat, axis) / mesh.size)
        value = jax.lax.psum(value, axis) / mesh.size
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": value}

    mapped = jax.shard_map(per_device, mesh=mesh, in_specs=(P(), P(), P(axis), P(axis)),
                           out_specs=(P(), P(), P()))
    rep, b = replicated(mesh), batch_sharding(mesh)
    jitted = jax.jit(mapped, in_shardings=(rep, rep, b, b), out_shardings=(rep, rep, rep),
                     donate_argnums=(0, 1) if donate else ())
    return _checked(jitted, mesh, (2, 3), pace, {0: rep, 1: rep})


__all__ = ["DATA_AXIS", "Rule", "ShardingError", "batch_sharding", "check_batch", "eval_step",
           "make_mesh", "put", "replicated", "shard_batch", "shard_largest_axis",
           "shard_map_train_step", "state_shardings", "to_host", "train_step", "tree_shardings"]
