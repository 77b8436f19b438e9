"""Command-line scaling options shared by experiments: devices, processes, precision.

    p = argparse.ArgumentParser(); scaling.add_arguments(p); args = p.parse_args()
    scale = scaling.setup(args)            # before anything touches a device
    init, step = scale.train_step(model, loss, optimizer, method)  # a jaxnn.TrainStep on the mesh
    x_local = images[scale.local(indices)]                    # this process's rows of a batch

--devices N (default: every device of every process) builds a 1-D mesh; when the devices are
CPUs, N > 1 splits each process's CPU into N / processes host devices (XLA_FLAGS, set here
before jax starts its backend). --coordinator/--num-processes/--process-id (or JAX_COORDINATOR_ADDRESS,
JAX_NUM_PROCESSES, JAX_PROCESS_ID) join a multi-process run; each process then reads only its
rows of every global batch and only process 0 writes. --precision bf16 computes in bfloat16
with float32 master parameters. Bad values are a `UsageError` (one line, exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import numpy as np

from experiments.common import cli
from experiments.common.loop import UsageError
from jaxnn.train import distributed

PRECISIONS = {"f32": None, "bf16": "bfloat16"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("scaling")
    g.add_argument("--devices", type=cli.positive_int, default=None,
                   help="devices in the mesh (default: all; on CPU, N > 1 makes N host devices)")
    g.add_argument("--coordinator", default=None, help="host:port of process 0 (multi-process)")
    g.add_argument("--num-processes", type=cli.positive_int, default=None)
    g.add_argument("--process-id", type=cli.nonnegative_int, default=None)
    g.add_argument("--precision", choices=sorted(PRECISIONS), default="f32",
                   help="bf16: bfloat16 compute, float32 master params")


@dataclasses.dataclass(frozen=True)
class Scale:
    mesh: object
    process_index: int
    process_count: int
    compute_dtype: str | None

    @property
    def is_main(self) -> bool:
        return self.process_index == 0

    def local(self, indices: np.ndarray) -> np.ndarray:
        """This process's consecutive part of a global batch's example indices."""
        n = len(indices) // self.process_count
        return indices[self.process_index * n:(self.process_index + 1) * n]

    def check_batch(self, flag: str, size: int) -> None:
        if size % self.mesh.size:
            raise UsageError(f"{flag} {size} does not split over {self.mesh.size} devices; use "
                             f"a multiple of {self.mesh.size}")

    def train_step(self, model, loss, optimizer, method: str, *, chunk: int | None = None):
        """`jaxnn.train_step` on the mesh: a `TrainStep(init, step)`, the batch sharded and
        the train state replicated (`jaxnn.train.sharding.train_step`)."""
        from jaxnn.train import sharding
        return sharding.train_step(model, loss, optimizer, method, mesh=self.mesh,
                                   compute_dtype=self.compute_dtype, chunk=chunk)

    def eval_step(self, model, loss=None, *, chunk: int | None = None):
        """`jaxnn.eval_step` on the mesh: (params, state, x, labels) -> summed metrics."""
        from jaxnn.train import sharding
        return sharding.eval_step(model, loss, mesh=self.mesh, compute_dtype=self.compute_dtype,
                                  chunk=chunk)

    def batch(self, *local_arrays):
        """Global arrays from this process's rows (see `jaxnn.train.sharding.shard_batch`)."""
        from jaxnn.train import sharding
        return sharding.shard_batch(self.mesh, *local_arrays)


def validate(args) -> distributed.Settings | None:
    """Check the scaling flags without touching a device; the multi-process settings."""
    if args.devices is not None and args.devices < 1:
        raise UsageError(f"--devices must be a positive integer, got {args.devices}")
    if args.precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}, got "
                         f"{args.precision!r}")
    try:
        settings = distributed.settings(args.coordinator, args.num_processes, args.process_id)
    except distributed.DistributedError as e:
        raise UsageError(str(e)) from None
    scaled = args.devices is not None or settings is not None or args.precision != "f32"
    if scaled and getattr(args, "on_nan", "stop") == "skip":
        raise UsageError("--on-nan skip does not combine with --devices, --num-processes or "
                         "--precision bf16 yet; use --on-nan stop")
    return settings


def wanted(args) -> bool:
    """Whether to take the sharded path: a scaling flag is set, or JAX sees several devices
    (GPUs or TPUs; a CPU is one device unless asked)."""
    import jax

    if args.devices is not None or args.precision != "f32" or validate(args) is not None:
        return True
    return jax.device_count() > 1


def local_copy(state):
    """Each replicated array of `state` as its copy on this process's first device."""
    import jax

    def one(leaf):
        if isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) > 1:
            return leaf.addressable_data(0)
        return leaf
    return jax.tree.map(one, state)


def setup(args) -> Scale:
    """Join the processes, make host devices if asked, build the mesh (call before any
    other use of jax devices)."""
    import jax

    from jaxnn.train import sharding

    settings = validate(args)
    if (args.devices or 1) > 1:  # only the CPU backend reads these flags
        per_process = args.devices // (settings.num_processes if settings else 1)
        os.environ["XLA_FLAGS"] = distributed.host_device_flags(
            max(per_process, 1), os.environ.get("XLA_FLAGS", ""))
    distributed.initialize(settings)
    try:
        mesh = sharding.make_mesh(args.devices)
    except sharding.ShardingError as e:
        raise UsageError(str(e)) from None
    return Scale(mesh, jax.process_index(), jax.process_count(), PRECISIONS[args.precision])


__all__ = ["PRECISIONS", "Scale", "add_arguments", "local_copy", "setup", "validate", "wanted"]
