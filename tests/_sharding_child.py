"""Runs in a subprocess with 8 forced host devices (see test_sharding.py); prints one JSON line.

STEPS SGD steps on a fixed global batch of 16: `sharding.train_step` (XLA's all-reduce) with
autodiff on D = 1, 2, 4, 8 devices, `sharding.shard_map_train_step` (explicit psum) with the
hand-written backward on D = 1, 2, 4, 8, each with the other method on D = 8, and params split
by `shard_largest_axis` on D = 8, and a stateful model (BatchNorm over the global batch,
Dropout) on D = 4; for each, the largest difference from the unsharded single-device
`jaxnn.train_step` with the same method. Also the error for a batch of 12.
"""

import json
import sys

import jax
import numpy as np
import optax

import jaxnn
from jaxnn import losses
from jaxnn.train import sharding
from jaxnn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool, Relu

STEPS, BATCH = 3, 16
METHODS = ("autodiff", "manual")


def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def run(step, params, opt, x, y, place=None):
    opt_state = opt.init(params)
    if place is not None:
        params, opt_state = place(params, opt_state)
    for _ in range(STEPS):
        params, opt_state, _ = step(params, opt_state, x, y)
        jax.block_until_ready(params)
    return sharding.to_host(params)


def run_stateful(step, params, state, opt, x, y):
    opt_state = opt.init(params)
    for i in range(STEPS):
        params, state, opt_state, _ = step(params, state, opt_state, x, y, jax.random.key(i))
    return sharding.to_host((params, state))


def main():
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    model = jaxnn.serial(Conv2D(4, 3, padding="SAME"), Relu(), MaxPool(2), Flatten(),
                         Dense(64), Relu(), Dense(10))
    loss, opt = losses.softmax_cross_entropy(), optax.sgd(0.1, momentum=0.9)
    _, params = model.init(jax.random.key(0), (-1, 8, 8, 1))
    params = jax.tree.map(np.asarray, params)  # host copies: the steps donate their inputs
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int32)
    report = {"devices": jax.device_count(), "diffs": {}}
    ref = {m: run(jaxnn.train_step(model, loss, opt, m), params, opt, x, y) for m in METHODS}
    cases = [("jit", "autodiff", d) for d in (1, 2, 4, 8)] + [("jit", "manual", 8)]
    cases += [("shard_map", "manual", d) for d in (1, 2, 4, 8)] + [("shard_map", "autodiff", 8)]
    for how, method, d in cases:
        make = sharding.train_step if how == "jit" else sharding.shard_map_train_step
        got = run(make(model, loss, opt, method, mesh=sharding.make_mesh(d)), params, opt, x, y)
        report["diffs"][f"{how} {method} D={d}"] = max_diff(got, ref[method])
    mesh = sharding.make_mesh(8)
    rule = sharding.shard_largest_axis(min_size=256)
    p_sh, o_sh = sharding.state_shardings(mesh, params, opt, rule)
    step = sharding.train_step(model, loss, opt, mesh=mesh, params=params, rule=rule)
    got = run(step, params, opt, x, y,
                 place=lambda p, s: (sharding.put(p, p_sh), sharding.put(s, o_sh)))
    report["diffs"]["rule-sharded autodiff D=8"] = max_diff(got, ref["autodiff"])
    report["split leaves"] = sum(len(s.spec) > 0 for s in jax.tree.leaves(p_sh))
    bn = jaxnn.serial(Conv2D(4, 3, padding="SAME"), BatchNorm(), Relu(), MaxPool(2), Flatten(),
                      Dropout(0.2), Dense(10))
    _, p_bn, s_bn = bn.init(jax.random.key(0), (-1, 8, 8, 1))
    p_bn, s_bn = jax.tree.map(np.asarray, (p_bn, s_bn))
    ref_bn = run_stateful(jaxnn.train_step(bn, loss, opt, "manual"), p_bn, s_bn, opt, x, y)
    got = run_stateful(sharding.train_step(bn, loss, opt, "manual", mesh=sharding.make_mesh(4)),
                       p_bn, s_bn, opt, x, y)
    report["diffs"]["stateful (BatchNorm, Dropout) manual D=4"] = max_diff(got, ref_bn)
    step = sharding.train_step(model, loss, opt, mesh=sharding.make_mesh(8))
    try:
        step(params, opt.init(params), x[:12], y[:12])
    except sharding.ShardingError as e:
        report["indivisible"] = str(e)
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    sys.exit(main())
