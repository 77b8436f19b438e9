"""One process of a multi-process run (see test_sharding.py): jax.distributed over gloo, one
CPU device per process, STEPS steps of a small convolutional net on a fixed global batch of which
this process feeds only its own rows; process 0 saves the final params to argv[1] (.npz)."""

import sys

import jax
import numpy as np
import optax

import jaxnn
from jaxnn import losses
from jaxnn.layers import Conv2D, Dense, Flatten, MaxPool, Relu
from jaxnn.train import distributed, sharding

STEPS, BATCH, SHAPE = 3, 16, (-1, 8, 8, 1)


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, *SHAPE[1:])).astype(np.float32)
    return x, rng.integers(0, 10, BATCH).astype(np.int32)


def setup():
    """(model, loss, optimizer, initial params), the same in every process and in the test."""
    model = jaxnn.serial(Conv2D(4, 3, padding="SAME"), Relu(), MaxPool(2), Flatten(), Dense(10))
    _, params, _ = model.init(jax.random.key(0), SHAPE)
    return model, losses.softmax_cross_entropy(), optax.sgd(0.05, 0.9), params


def main(out: str, method: str) -> int:
    distributed.initialize(distributed.settings(), timeout_s=60)
    mesh = sharding.make_mesh()
    model, loss, opt, params = setup()
    make = sharding.shard_map_train_step if method == "manual" else sharding.train_step
    train = make(model, loss, opt, method, mesh=mesh)
    ts = train.init(params)
    x, y = data()
    rows = slice(jax.process_index() * BATCH // jax.process_count(),
                 (jax.process_index() + 1) * BATCH // jax.process_count())
    batch = sharding.shard_batch(mesh, x[rows], y[rows])
    for i in range(STEPS):
        ts, _ = train.step(ts, batch, jax.random.key(i))
    host = sharding.to_host(ts.params)
    if distributed.is_main_process():
        leaves = jax.tree.leaves(host)
        np.savez(out, *leaves, devices=jax.device_count(), processes=jax.process_count())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
