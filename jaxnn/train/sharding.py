"""Data-parallel training on a device mesh, with XLA's SPMD partitioner or an explicit psum.

A 1-D `Mesh` with axis "data" spans the devices (of every process). A global batch (N, ...) is
split along axis 0 into equal shards, one per device; parameters and optimiser state are
replicated, or split by a rule the caller passes. Two ways to reduce the gradients:

  train_step(...)            `jaxnn.train_step` under `jax.jit` with shardings (`shard_step`
                             does the same for any `TrainStep`). Each device computes
                             dJ_d/dW on its shard and XLA inserts the all-reduce:
                             dJ/dW = (1/D) Σ_d dJ_d/dW, with J the mean loss over the batch.
  shard_map_train_step(...)  the same step written per device with `jax.shard_map`; the
                             all-reduce is visible: one `lax.psum` over the flattened gradient
                             vector, divided by D. With equal shards, the mean of the D shard
                             means is the batch mean, so both give the gradient of one device.

Both return a `TrainStep(init, step)` with the one step signature of `jaxnn.train`:

    init(params, model_state=()) -> TrainState          (placed on the mesh)
    step(train_state, (x, y), key) -> (train_state, metrics)

x, y are global (N, ...) arrays split along axis 0; the TrainState (params, model state such
as BatchNorm's statistics over the global batch, optimiser state, step count) and the key are
replicated, or split by a layout rule. Both work with method "autodiff" or "manual" and with
`compute_dtype="bfloat16"` (see `jaxnn.train.precision`). A batch that D does not divide
raises `ShardingError` before anything runs; nothing is padded.

On one CPU, `--xla_force_host_platform_device_count=D` makes D host devices sharing one
thread pool. Steps dispatched far ahead of their completion can deadlock there in the
all-reduce, so on such a mesh the steps returned here keep at most two steps in flight and
end the process with a one-line message if a step never finishes (`jaxnn.train.distributed.Pacer`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, cast

import jax
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnn import backprop
from jaxnn.core import Layer, no_state
from jaxnn.losses import Loss
from jaxnn.train import chunks
from jaxnn.train import step as steps
from jaxnn.train.distributed import Pacer, needs_pacing
from jaxnn.train.precision import mixed_precision
from jaxnn.train.step import TrainState, TrainStep

DATA_AXIS = "data"

Layout = Callable[[str, tuple, int], P]  # (leaf path, leaf shape, device count) -> spec


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


def shard_largest_axis(min_size: int = 1 << 14) -> Layout:
    """A layout rule: leaves with at least `min_size` elements are split along their largest axis
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


def tree_shardings(tree, mesh: Mesh, rule: Layout | None = None):
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


def _model(model: Layer, compute_dtype) -> Layer:
    return model if compute_dtype is None else mixed_precision(model, compute_dtype)


def _batch_size(batch) -> int:
    return jax.tree.leaves(batch)[0].shape[0]


def _pacer(mesh: Mesh, pace: bool | None) -> Pacer | None:
    return Pacer(depth=1) if (needs_pacing(mesh) if pace is None else pace) else None


class MeshStep(Protocol):
    """A train step compiled for a mesh: step(train_state, batch, key) -> (train_state, metrics),
    with `step.mesh` and `step.lower(train_state, batch, key)` (the lowered computation)."""

    mesh: Mesh
    lower: Callable[[TrainState, Any, Any], Any]

    def __call__(self, ts: TrainState, batch: Any, key: Any) -> tuple[TrainState, Any]: ...


class MeshEval(Protocol):
    """An eval step for a mesh: step(params, state, x, labels) -> {"correct", "loss"}, with
    `step.mesh`."""

    mesh: Mesh

    def __call__(self, params: Any, state: Any, x: Any, labels: Any) -> dict[str, Any]: ...


def _on_mesh(step_fn: Callable, mesh: Mesh, rule: Layout | None, *, donate: bool,
             pace: bool | None) -> MeshStep:
    """step_fn (train_state, batch, key) -> (train_state, metrics) compiled for the mesh: the
    batch split along axis 0 (checked first, so the error is ours, not the partitioner's), the
    train state laid out by `rule` (replicated for None) and placed so before the call (so a
    second call does not compile again), the key and the metrics replicated; for CPU host
    devices (or pace=True) at most two steps in flight (`Pacer`). `step.lower(...)` lowers it."""
    pacer = _pacer(mesh, pace)
    b, rep = batch_sharding(mesh), replicated(mesh)
    compiled: dict = {}

    def jitted_for(ts):
        shardings = tree_shardings(ts, mesh, rule)
        treedef = jax.tree.structure(ts)
        if treedef not in compiled:
            compiled[treedef] = jax.jit(step_fn, in_shardings=(shardings, b, rep),
                                        out_shardings=(shardings, rep),
                                        donate_argnums=(0,) if donate else ())
        return compiled[treedef], shardings

    def prepare(ts, batch, key):
        check_batch(_batch_size(batch), mesh)
        jitted, shardings = jitted_for(ts)
        return jitted, (put(ts, shardings), batch, put(key, rep))

    def step(ts: TrainState, batch, key):
        jitted, args = prepare(ts, batch, key)
        out = jitted(*args)
        if pacer is not None:
            pacer(out[1])  # the metrics: never donated
        return out

    def lower(ts, batch, key):
        jitted, args = prepare(ts, batch, key)
        return jitted.lower(*args)

    sharded = cast(MeshStep, step)  # the function, given the two attributes below
    sharded.lower, sharded.mesh = lower, mesh
    return sharded


def shard_step(train: TrainStep, *, mesh: Mesh, rule: Layout | None = None,
               donate: bool = True, pace: bool | None = None) -> TrainStep:
    """Any `TrainStep` (from `jaxnn.make_step` or `jaxnn.train_step`) on the mesh: the same
    `TrainStep(init, step)`, its `init` placing the state and its `step` taking global batches.

    rule: a layout for the train state's leaves (`shard_largest_axis`), None to replicate.
    donate=True reuses the old state's buffers (do not read the argument after the call).
    pace: wait for step k-1 after dispatching step k (`jaxnn.train.distributed.Pacer`); the
    default does so exactly when the mesh has several CPU devices in this process.
    """
    def init(params, model_state=()) -> TrainState:
        ts = train.init(params, model_state)
        return put(ts, tree_shardings(ts, mesh, rule))

    return TrainStep(init, _on_mesh(train.step, mesh, rule, donate=donate, pace=pace))


def train_step(model: Layer, loss: Loss, optimizer, method: str = "autodiff", *, mesh: Mesh,
               rule: Layout | None = None, compute_dtype=None, chunk: int | None = None,
               donate: bool = True, pace: bool | None = None) -> TrainStep:
    """`jaxnn.train_step(model, loss, optimizer, method, chunk=chunk)` on the mesh
    (`shard_step`): a `TrainStep(init, step)` whose step takes global batches; a model's
    state (e.g. BatchNorm statistics, over the global batch) is replicated.

    compute_dtype: e.g. "bfloat16" for bf16 compute with float32 master params.
    """
    train = steps.train_step(_model(model, compute_dtype), loss, optimizer, method, chunk=chunk)
    return shard_step(train, mesh=mesh, rule=rule, donate=donate, pace=pace)


def eval_step(model: Layer, loss: Loss | None = None, *, mesh: Mesh, rule: Layout | None = None,
              compute_dtype=None, chunk: int | None = None, pace: bool | None = None
              ) -> MeshEval:
    """`jaxnn.eval_step` on the mesh: (params, state, x, labels) -> {"correct", "loss"}
    summed over the global batch; params laid out by `rule`, state replicated."""
    inner = steps.eval_step(_model(model, compute_dtype), loss, chunk=chunk)
    pacer = _pacer(mesh, pace)
    b, rep = batch_sharding(mesh), replicated(mesh)
    compiled: dict = {}

    def step(params, state, x, labels):
        check_batch(x.shape[0], mesh)
        p_sh = tree_shardings(params, mesh, rule)
        treedef = jax.tree.structure((params, state))
        if treedef not in compiled:
            compiled[treedef] = jax.jit(inner, in_shardings=(p_sh, rep, b, b), out_shardings=rep)
        out = compiled[treedef](put(params, p_sh), put(state, rep), x, labels)
        if pacer is not None:
            pacer(out)
        return out

    sharded = cast(MeshEval, step)  # the function, given `mesh` below
    sharded.mesh = mesh
    return sharded


def shard_map_train_step(model: Layer, loss: Loss, optimizer, method: str = "manual", *,
                         mesh: Mesh, compute_dtype=None, chunk: int | None = None,
                         donate: bool = True, pace: bool | None = None) -> TrainStep:
    """The data-parallel step written per device, the all-reduce explicit.

    On device d, with its shard (x_d, y_d) of N/D examples and replicated params W:
        J_d, g_d = value_and_grad(W, x_d, y_d)            (method: "manual" or "autodiff")
        g        = psum(ravel(g_d), "data") / D           (one all-reduce of every gradient)
        J        = psum(J_d, "data") / D
        W, s     = optimizer step on g                    (identical on every device)
    Device d draws its random numbers from fold_in(key, d). Same `TrainStep` and results as
    `train_step` with a replicated layout. A model with state is refused (ShardingError): its
    batch statistics would be per device; `train_step` computes them over the global batch.
    """
    axis = mesh.axis_names[0]
    inner_model = _model(model, compute_dtype)
    chunks.check_chunk(chunk)
    value_and_grad = (backprop.value_and_grad(inner_model, loss, method, jit=False) if chunk is None
                      else chunks.value_and_grad(inner_model, loss, method, chunk))

    def update(model, params, model_state, batch, rule_state, key):
        if not no_state(model_state):
            raise ShardingError(f"shard_map_train_step: {model.name} has state (batch "
                                f"statistics per device); use sharding.train_step")
        key = None if key is None else jax.random.fold_in(key, jax.lax.axis_index(axis))
        # A device-varying copy of the params: without it, autodiff would differentiate through
        # shard_map's implicit broadcast of the replicated params and insert the psum itself.
        (value, _), grads = value_and_grad(jax.lax.pcast(params, axis, to="varying"),
                                           model_state, *batch, key)
        flat, unravel = ravel_pytree(grads)
        grads = unravel(jax.lax.psum(flat, axis) / mesh.size)
        return grads, model_state, rule_state, {"loss": jax.lax.psum(value, axis) / mesh.size}

    rule = steps.Rule(f"gradient[{method}, psum over {axis}]", update, False, lambda params: ())
    train = steps.make_step(inner_model, rule, optimizer)
    mapped = jax.shard_map(train.step, mesh=mesh, in_specs=(P(), P(axis), P()),
                           out_specs=(P(), P()))
    return TrainStep(shard_step(train, mesh=mesh).init,
                     _on_mesh(mapped, mesh, None, donate=donate, pace=pace))


__all__ = ["DATA_AXIS", "Layout", "MeshEval", "MeshStep", "ShardingError", "batch_sharding",
           "check_batch", "eval_step", "make_mesh", "put", "replicated", "shard_batch", "shard_largest_axis",
           "shard_map_train_step", "shard_step", "to_host", "train_step", "tree_shardings"]
