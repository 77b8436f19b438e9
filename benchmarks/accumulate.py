"""A large batch two ways: one program in unrolled chunks, or optax.MultiSteps over k calls.

    python -m benchmarks.accumulate                 # batch 2048: one call vs 16 calls of 128
    python -m benchmarks.accumulate --batch 1024 --calls 8 --turns 7

Modern LeNet-5 (the convolution the experiments pick on this backend), Adam, MNIST training
images on the device; for each method ("manual", "autodiff"), median µs per image over
alternating turns of (a) `train_step(..., chunk=32)` on the whole batch and (b) the same step
with `optax.MultiSteps(adam, k)` called k times on slices of batch / k. Both apply one update per
batch; (b) holds one slice's buffers at a time.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn
from jaxnn import data as jdata
from jaxnn import losses
from jaxnn.models import LENET5_INPUT_SHAPE, lenet5


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--calls", type=int, default=16, help="MultiSteps calls per batch")
    ap.add_argument("--chunk", type=int, default=32)
    ap.add_argument("--turns", type=int, default=5)
    args = ap.parse_args(argv)
    if args.batch % args.calls:
        ap.error(f"--calls {args.calls} must divide --batch {args.batch}")
    images, labels = jdata.load("mnist", "train")
    x = jnp.asarray(jdata.add_channel_axis(jdata.normalize(images[:args.batch])))
    y = jnp.asarray(labels[:args.batch].astype(np.int32))
    xs = x.reshape(args.calls, -1, *x.shape[1:])
    ys = y.reshape(args.calls, -1)
    conv = jaxnn.layers.CPUConv2D if jax.default_backend() == "cpu" else None
    model, loss = lenet5("modern", conv=conv), losses.softmax_cross_entropy()
    _, params, state = model.init(jax.random.key(0), LENET5_INPUT_SHAPE)
    key, result = jax.random.key(1), {}
    for method in ("manual", "autodiff"):
        one = jaxnn.train_step(model, loss, optax.adam(1e-3), method, chunk=args.chunk)
        multi = jaxnn.train_step(model, loss, optax.MultiSteps(optax.adam(1e-3), args.calls), method,
                                 chunk=args.chunk)

        def run_one(ts, one=one):
            return jax.block_until_ready(one.step(ts, (x, y), key)[0])

        def run_multi(ts, multi=multi):
            for i in range(args.calls):
                ts, _ = multi.step(ts, (xs[i], ys[i]), key)
            return jax.block_until_ready(ts)

        ts_one, ts_multi = run_one(one.init(params, state)), run_multi(multi.init(params, state))
        times_one, times_multi = [], []
        for _ in range(args.turns):
            t = time.perf_counter()
            ts_one = run_one(ts_one)
            times_one.append(time.perf_counter() - t)
            t = time.perf_counter()
            ts_multi = run_multi(ts_multi)
            times_multi.append(time.perf_counter() - t)
        a = statistics.median(times_one) / args.batch * 1e6
        b = statistics.median(times_multi) / args.batch * 1e6
        result[method] = {"one_program_us": a, "multisteps_us": b, "ratio": b / a}
        print(f"{method}: one program of {args.batch} (chunks of {args.chunk}) {a:.1f} µs/image; "
              f"MultiSteps {args.calls} × {args.batch // args.calls} {b:.1f} µs/image; "
              f"ratio {b / a:.2f}", flush=True)
    return result


if __name__ == "__main__":
    main()
