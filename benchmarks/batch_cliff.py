"""Where the cost per image of LeNet-5 rises with the batch size: per layer, then per HLO op.

    python -m benchmarks.batch_cliff                                 # both parts
    python -m benchmarks.batch_cliff --batches 64,128,256,2048 --repeats 7 --no-ops

1. Per layer (modern LeNet-5 stages): the jitted `apply` (forward) and forward + `jax.vjp`
   backward of each layer alone, at its LeNet input shape, for every batch size; all (batch,
   layer) pairs alternate inside each repeat; medians of wall µs per image.
2. Per op (`--op-batches`): `benchmarks.profile_step.trace_calls` of the whole-batch training
   step (`train_step(..., chunk=None)`, autodiff) and of the evaluation step
   (`eval_step(..., chunk=None)`); every HLO op's summed thunk time in µs per image, the
   ops ranked by their time at the largest batch. The compiled programs differ only in shapes
   for the heavy ops (same fusions, same convolution and dot instructions), so an op whose cost
   per image rises does so for its operands' size, not for a different algorithm.
3. Page faults (`--op-batches`): minor page faults per image per call (`resource.getrusage`)
   and wall µs per image of the training and evaluation steps, whole batch against chunks of
   `--chunk` examples (default 32), alternating, medians: a program whose buffers are mapped anew on every
   call pays a kernel trap per 4 KiB page it touches first.
4. Allocator (`--malloc`): the page-fault table again in fresh processes under glibc's
   MALLOC_ARENA_MAX=1 (one arena for every thread) and MALLOC_MMAP_MAX_=0 (no mmap), alone and
   together: which setting makes the faults go, and what it costs at a small batch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.batch_cliff", description=__doc__.split("\n")[0])
    ap.add_argument("--batches", default="64,128,256,512,2048", help="per-layer batch sizes")
    ap.add_argument("--op-batches", default="128,2048", help="per-op batch sizes")
    ap.add_argument("--repeats", type=int, default=5, help="alternating repeats (default 5)")
    ap.add_argument("--images", type=int, default=1024, help="images per timing (default 1024)")
    ap.add_argument("--chunk", type=int, default=32, help="chunk size against the whole batch (default 32)")
    ap.add_argument("--top", type=int, default=12, help="rows of each per-op table (default 12)")
    ap.add_argument("--no-layers", dest="layers", action="store_false", help="skip the per-layer table")
    ap.add_argument("--no-ops", dest="ops", action="store_false", help="skip the per-op traces")
    ap.add_argument("--out", default="runs/cliff", help="trace directory (default runs/cliff)")
    ap.add_argument("--malloc", action="store_true",
                    help="only the page-fault table, once per glibc malloc setting (MALLOC_* "
                         "environment variables), each in a fresh process")
    args = ap.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]
    args.op_batches = [int(b) for b in args.op_batches.split(",")]
    return args


def layer_table(batches, repeats, images):
    """{(layer, batch): (forward µs/img, forward+backward µs/img)} medians."""
    import jax

    from jaxnn.models import lenet5_stages

    stages = lenet5_stages("modern")
    fns = {}
    for n in batches:
        x = jax.random.normal(jax.random.key(1), (n, 28, 28, 1))
        shape = x.shape
        for i, (name, layer) in enumerate(stages):
            shape, params, _ = layer.init(jax.random.key(i), shape)
            fwd = jax.jit(lambda p, xin, layer=layer: layer(p, xin))  # eval mode, no state

            def fwd_bwd(p, xin, layer=layer):
                y, pullback = jax.vjp(layer, p, xin)
                return pullback(y)

            fb = jax.jit(fwd_bwd)
            jax.block_until_ready((fwd(params, x), fb(params, x)))
            fns[name, n] = (fwd, fb, params, x)
            x = fwd(params, x)
    times = {k: ([], []) for k in fns}
    for _ in range(repeats):
        for (name, n), (fwd, fb, params, x) in fns.items():
            calls = max(1, images // n)
            for j, fn in enumerate((fwd, fb)):
                t = time.perf_counter()
                for _ in range(calls):
                    jax.block_until_ready(fn(params, x))
                times[name, n][j].append((time.perf_counter() - t) / (calls * n) * 1e6)
    return [name for name, _ in stages], {k: tuple(statistics.median(v) for v in pair)
                                           for k, pair in times.items()}


def op_tables(batches, images, out):
    """{kind: {batch: trace result}} for kind "train" and "eval" (whole batch, autodiff)."""
    import jax
    import optax

    import jaxnn
    from benchmarks.profile_step import trace_calls
    from jaxnn import losses
    from jaxnn.models import LENET5_INPUT_SHAPE, lenet5

    model, loss, opt = lenet5("modern"), losses.softmax_cross_entropy(), optax.adam(1e-3)
    _, params, state = model.init(jax.random.key(0), LENET5_INPUT_SHAPE)
    result = {"train": {}, "eval": {}}
    for n in batches:
        x = jax.random.normal(jax.random.key(1), (n, 28, 28, 1))
        y = jax.random.randint(jax.random.key(2), (n,), 0, 10)
        init, train = jaxnn.train_step(model, loss, opt)
        evaluate = jaxnn.eval_step(model, loss)
        for kind, fn, args in (("train", train, (init(params, state), (x, y), jax.random.key(3))),
                               ("eval", evaluate, (params, state, x, y))):
            jax.block_until_ready(fn(*args))
            calls = max(2, images // n)
            res = trace_calls(fn, args, calls, Path(out) / f"{kind}{n}")
            res["batch"] = n
            result[kind][n] = res
    return result


def fault_table(batches, repeats, images, chunk=32):
    """[(kind, batch, chunk, faults per image per call, wall µs per image)], medians."""
    import resource

    import jax
    import optax

    import jaxnn
    from jaxnn import losses
    from jaxnn.models import LENET5_INPUT_SHAPE, lenet5

    model, loss, opt = lenet5("modern"), losses.softmax_cross_entropy(), optax.adam(1e-3)
    _, params, state = model.init(jax.random.key(0), LENET5_INPUT_SHAPE)
    rkey = jax.random.key(3)
    calls = {}
    for n in batches:
        x = jax.random.normal(jax.random.key(1), (n, 28, 28, 1))
        y = jax.random.randint(jax.random.key(2), (n,), 0, 10)
        for c in (None, chunk):
            init, train = jaxnn.train_step(model, loss, opt, chunk=c)
            evaluate = jaxnn.eval_step(model, loss, chunk=c)
            ts = init(params, state)
            calls["train", n, c] = lambda f=train, ts=ts, x=x, y=y: f(ts, (x, y), rkey)
            calls["eval", n, c] = lambda f=evaluate, x=x, y=y: f(params, state, x, y)
    for fn in calls.values():
        jax.block_until_ready(fn())
    faults = {k: [] for k in calls}
    wall = {k: [] for k in calls}
    for _ in range(repeats):
        for key, fn in calls.items():
            n = key[1]
            count = max(1, images // n)
            f0, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
            for _ in range(count):
                jax.block_until_ready(fn())
            wall[key].append((time.perf_counter() - t) / (count * n) * 1e6)
            faults[key].append((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / (count * n))
    return [(*key, statistics.median(faults[key]), statistics.median(wall[key])) for key in calls]


def print_layers(names, table, batches):
    head = " | ".join(f"fwd {n}" for n in batches) + " | " + " | ".join(f"f+b {n}" for n in batches)
    print(f"\n## Per layer, wall µs per image (median); load {os.getloadavg()[0]:.1f}\n")
    print(f"| layer | {head} |")
    print("|---|" + "---|" * (2 * len(batches)))
    for name in names:
        cells = [f"{table[name, n][0]:.1f}" for n in batches] + [f"{table[name, n][1]:.1f}" for n in batches]
        print(f"| {name} | " + " | ".join(cells) + " |")
    for j, what in enumerate(("fwd", "f+b")):
        total = [sum(table[name, n][j] for name in names) for n in batches]
        print(f"| sum {what} | " + " | ".join(f"{t:.1f}" for t in total) + " |")


def print_ops(kind, traces, top):
    batches = sorted(traces)
    big = traces[batches[-1]]
    print(f"\n## {kind} step, per HLO op, µs per image (thunk time summed over threads); "
          f"load {os.getloadavg()[0]:.1f}\n")
    print("| op | " + " | ".join(str(n) for n in batches) + " | what (at the largest batch) |")
    print("|---|" + "---|" * (len(batches) + 1))
    for op, _ in sorted(big["ops"].items(), key=lambda kv: -kv[1])[:top]:
        cells = [f"{traces[n]['ops'].get(op, float('nan')) * 1e3 / n:.1f}" for n in batches]
        print(f"| {op} | " + " | ".join(cells) + f" | {big['labels'].get(op, '?')[:90]} |")
    totals = [sum(traces[n]["ops"].values()) * 1e3 / n for n in batches]
    print("| all ops | " + " | ".join(f"{t:.1f}" for t in totals) + " | |")


MALLOC_SETTINGS = {
    "glibc defaults": {},
    "one arena": {"MALLOC_ARENA_MAX": "1"},
    "no mmap": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**31)},
    "one arena, no mmap": {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0",
                           "MALLOC_TRIM_THRESHOLD_": str(2**31)},
}


def malloc_tables(args) -> None:
    """The page-fault table under each MALLOC_SETTINGS entry, in one fresh process each (glibc
    reads them at start-up); within a process the steps alternate as in `fault_table`."""
    import subprocess
    import sys

    print(f"\n## Page faults per image per call under glibc malloc settings; load "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| malloc setting | step | batch | chunk | minor faults / image | wall µs / image |")
    print("|---|---|---|---|---|---|")
    for label, env in MALLOC_SETTINGS.items():
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.batch_cliff", "--no-layers", "--no-ops",
             "--op-batches", ",".join(map(str, args.op_batches)), "--repeats", str(args.repeats),
             "--images", str(args.images), "--chunk", str(args.chunk)],
            env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith(("| train", "| eval")):
                print(f"| {label} {line}")


def main(argv=None):
    args = parse_args(argv)
    print(f"load average {os.getloadavg()}")
    if args.malloc:
        return malloc_tables(args)
    if args.layers:
        names, table = layer_table(args.batches, args.repeats, args.images)
        print_layers(names, table, args.batches)
    print(f"\n## Page faults per image per call; load {os.getloadavg()[0]:.1f}\n")
    print("| step | batch | chunk | minor faults / image | wall µs / image |")
    print("|---|---|---|---|---|")
    for kind, n, c, faults, wall in fault_table(args.op_batches, args.repeats, args.images,
                                                args.chunk):
        print(f"| {kind} | {n} | {c or 'whole'} | {faults:.1f} | {wall:.1f} |")
    if args.ops:
        traces = op_tables(args.op_batches, args.images, args.out)
        for kind in ("train", "eval"):
            print_ops(kind, traces[kind], args.top)


if __name__ == "__main__":
    main()
