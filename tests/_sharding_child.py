"""Runs in a subprocess with 8 forced host devices (see test_sharding.py); prints one JSON line.

STEPS SGD steps on a fixed global batch of 16 of a small convolutional net:
`sharding.train_step` (XLA's all-reduce) with autodiff on D = 1, 2 (in chunks of 4) and 8
(params split by `shard_largest_axis`), `sharding.shard_map_train_step` (explicit psum) with
the hand-written backward on D = 1, 2, 8, and a model with state (BatchNorm over the global
batch, Dropout) on D = 2; for each, the largest difference from the unsharded single-device
`jaxnn.train_step` with the same method. Also the errors for a batch of 12 and for shard_map
with a model with state, and the sharded evaluation in chunks.
"""

import json
import sys

import jax
import numpy as np
import optax

import jaxnn
from jaxnn import losses
from jaxnn.layers import BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool, Relu
from jaxnn.train import sharding

STEPS, BATCH = 3, 16
METHODS = ("autodiff", "manual")


def max_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def run(train, params, x, y, state=()):
    ts = train.init(params, state)
    for i in range(STEPS):
        ts, _ = train.step(ts, (x, y), jax.random.key(i))
    jax.block_until_ready(ts)
    return sharding.to_host((ts.params, ts.model_state))


def main():
    jax.config.update("jax_numpy_rank_promotion", "raise")
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    model = jaxnn.serial(Conv2D(4, 3, padding="SAME"), Relu(), MaxPool(2), Flatten(),
                         Dense(64), Relu(), Dense(10))
    loss, opt = losses.softmax_cross_entropy(), optax.sgd(0.1, momentum=0.9)
    _, params, _ = model.init(jax.random.key(0), (-1, 8, 8, 1))
    params = jax.tree.map(np.asarray, params)  # host copies: the steps donate their inputs
    rng = np.random.default_rng(0)
    x = rng.standard_normal((BATCH, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 10, BATCH).astype(np.int32)
    report = {"devices": jax.device_count(), "diffs": {}}
    ref = {m: run(jaxnn.train_step(model, loss, opt, m), params, x, y) for m in METHODS}
    rule = sharding.shard_largest_axis(min_size=256)
    cases = [("jit", "autodiff", 1, {}), ("jit", "autodiff", 2, {"chunk": 4}),
             ("jit", "autodiff", 8, {"rule": rule})]
    cases += [("shard_map", "manual", d, {}) for d in (1, 2, 8)]
    for how, method, d, extra in cases:
        make = sharding.train_step if how == "jit" else sharding.shard_map_train_step
        train = make(model, loss, opt, method, mesh=sharding.make_mesh(d), **extra)
        name = " ".join([how, method, *(f"{k}" for k in extra), f"D={d}"])
        report["diffs"][name] = max_diff(run(train, params, x, y), ref[method])
        if "rule" in extra:
            ts = train.init(params)
            report["split leaves"] = sum(len(leaf.sharding.spec) > 0
                                         for leaf in jax.tree.leaves(ts.params))
            try:
                train.step(ts, (x[:12], y[:12]), jax.random.key(0))
            except sharding.ShardingError as e:
                report["indivisible"] = str(e)
    bn = jaxnn.serial(Conv2D(4, 3, padding="SAME"), BatchNorm(), Relu(), MaxPool(2), Flatten(),
                      Dropout(0.2), Dense(10))
    _, p_bn, s_bn = bn.init(jax.random.key(0), (-1, 8, 8, 1))
    p_bn, s_bn = jax.tree.map(np.asarray, (p_bn, s_bn))
    ref_bn = run(jaxnn.train_step(bn, loss, opt, "manual"), p_bn, x, y, s_bn)
    got = run(sharding.train_step(bn, loss, opt, "manual", mesh=sharding.make_mesh(2)), p_bn, x, y, s_bn)
    report["diffs"]["with state (BatchNorm, Dropout) manual D=2"] = max_diff(got, ref_bn)
    try:
        run(sharding.shard_map_train_step(bn, loss, opt, mesh=sharding.make_mesh(2)), p_bn, x, y, s_bn)
    except sharding.ShardingError as e:
        report["shard_map with state"] = str(e)
    evaluate = sharding.eval_step(model, loss, mesh=sharding.make_mesh(8), chunk=1)
    want = jaxnn.eval_step(model, loss)(params, (), x, y)
    got = evaluate(params, (), x, y)
    report["eval"] = [int(got["correct"]) - int(want["correct"]),
                      abs(float(got["loss"]) - float(want["loss"])) / float(want["loss"])]
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    sys.exit(main())
