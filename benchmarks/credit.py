"""Step time of each credit-assignment method against backprop's, side by side in one process.

    python -m benchmarks.credit                      # batch 128, every method, 7 turns
    python -m benchmarks.credit --quick              # a check that it runs (batch 16, 2 turns)
    python -m benchmarks.credit --methods backprop fa dfa --batch 256 --turns 11

Modern LeNet-5 (the convolution and chunk size experiments.train_lenet picks on this backend),
AdamW as in the experiment, one batch of MNIST training images on the device (random images when
the files are absent). For every method of `jaxnn.credit` the jitted `make_step(model,
credit.rule(loss, method), optimizer)` is compiled and warmed up first; then each turn times
`--steps` steps of every method in turn (the methods interleaved, so a change in machine load
hits them alike). Reported: the median µs per step over the turns and its ratio to backprop's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxnn
from experiments import train_lenet
from jaxnn import credit, losses
from jaxnn.models import LENET5_INPUT_SHAPE, lenet5


def _batch(size: int):
    from jaxnn import data as jdata
    try:
        images, labels = jdata.load("mnist", "train")
        x = jdata.add_channel_axis(jdata.normalize(images[:size]))
        y = labels[:size].astype(np.int32)
    except (jdata.DataError, FileNotFoundError):
        x = np.asarray(jax.random.normal(jax.random.key(0), (size, 28, 28, 1)), np.float32)
        y = np.arange(size, dtype=np.int32) % 10
    return jnp.asarray(x), jnp.asarray(y)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--methods", nargs="+", default=list(credit.METHODS), choices=credit.METHODS)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20, help="steps per turn")
    ap.add_argument("--turns", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="batch 16, 3 steps, 2 turns: a check that it runs")
    args = ap.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.turns = 16, 3, 2
    methods = ["backprop"] + [m for m in dict.fromkeys(args.methods) if m != "backprop"]
    backend = jax.default_backend()
    config = train_lenet.Config().resolved(backend)
    model = lenet5("modern", conv=jaxnn.layers.CPUConv2D if config.conv == "cpu" else None)
    loss = losses.softmax_cross_entropy()
    chunk = config.chunk if isinstance(config.chunk, int) and config.chunk < args.batch else None
    _, params, state = model.init(jax.random.key(0), LENET5_INPUT_SHAPE)
    batch = _batch(args.batch)
    optimizer = train_lenet.make_optimizer(config, 1000)
    steps, states = {}, {}
    for method in methods:
        rule = credit.rule(loss, method, model=model, input_shape=LENET5_INPUT_SHAPE, chunk=chunk)
        train = jaxnn.make_step(model, rule, optimizer)
        ts = train.init(params, state)
        for i in range(2):  # compile, then one warm step
            ts, _ = train.step(ts, batch, jax.random.key(i))
        steps[method], states[method] = train.step, jax.block_until_ready(ts)

    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(args.turns):
        for method in methods:
            ts, t = states[method], time.perf_counter()
            for i in range(args.steps):
                ts, _ = steps[method](ts, batch, jax.random.key(i))
            jax.block_until_ready(ts)
            times[method].append((time.perf_counter() - t) / args.steps)
            states[method] = ts
    result, base = {}, statistics.median(times["backprop"])
    print(f"LeNet-5 modern, batch {args.batch}, chunk {chunk}, {backend}: median over {args.turns} "
          f"turns of {args.steps} steps")
    print("| method | µs / step | × backprop |")
    print("|---|---|---|")
    for method in methods:
        med = statistics.median(times[method])
        result[method] = {"us_per_step": med * 1e6, "ratio": med / base}
        print(f"| {method} | {med * 1e6:.0f} | {med / base:.2f} |", flush=True)
    return result


if __name__ == "__main__":
    main()
