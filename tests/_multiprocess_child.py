"""One process of a multi-process run (see test_sharding.py): jax.distributed over gloo, one
CPU device per process, STEPS LeNet-5 steps on a fixed global batch of which this process
feeds only its own rows; process 0 saves the final params to argv[1] (.npz)."""

import sys

import jax
import numpy as np
import optax

from jaxnn.train import distributed, sharding
from jaxnn import losses
from jaxnn.models import LENET5_INPUT_SHAPE, lenet5

STEPS, BATCH = 3, 32


def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 28, 28, 1)).astype(np.float32)
    return x, rng.integers(0, 10, BATCH).astype(np.int32)


def main(out: str, method: str) -> int:
    distributed.initialize(distributed.settings(), timeout_s=60)
    mesh = sharding.make_mesh()
    model, loss, opt = lenet5("modern"), losses.softmax_cross_entropy(), optax.sgd(0.05, 0.9)
    _, params = model.init(jax.random.key(0), LENET5_INPUT_SHAPE)
    rep = sharding.replicated(mesh)
    params = sharding.put(params, jax.tree.map(lambda _: rep, params))
    opt_state = opt.init(params)
    make = sharding.shard_map_train_step if method == "manual" else sharding.train_step
    step = make(model, loss, opt, method, mesh=mesh)
    x, y = data()
    rows = slice(jax.process_index() * BATCH // jax.process_count(),
                 (jax.process_index() + 1) * BATCH // jax.process_count())
    xb, yb = sharding.shard_batch(mesh, x[rows], y[rows])
    for _ in range(STEPS):
        params, opt_state, _ = step(params, opt_state, xb, yb)
    host = sharding.to_host(params)
    if distributed.is_main_process():
        leaves = jax.tree.leaves(host)
        np.savez(out, *leaves, devices=jax.device_count(), processes=jax.process_count())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
