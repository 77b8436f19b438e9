"""Chunk sizes side by side: the LeNet-5 evaluation step and training step at explicit chunks.

    python -m benchmarks.chunk_sizes                      # the defaults below, 7 rounds
    python -m benchmarks.chunk_sizes --rounds 9 --conv plain
    python -m benchmarks.chunk_sizes --eval-chunks none,32,250 --train-chunks none,32 --no-manual

Evaluation: `jaxnn.eval_step(model, loss, chunk=c)(params, state, x, y)` at batch
`--eval-batch` (default 1000, the test set's batch in experiments/train_lenet.py), one row per
chunk c. Training: `jaxnn.train_step(model, loss, adam(1e-3), method, chunk=c)` at batch
`--train-batch` (default 128), per method and chunk. The model is modern LeNet-5 with C1 and C3
built by `--conv` ("cpu": `jaxnn.layers.CPUConv2D`, what the experiment uses on XLA:CPU;
"plain": `Conv2D`). Every contender is compiled first (timed apart), then all of them run in
turn inside each round (A B C … A B C …), `--calls` calls each on one fixed batch already on
the device; figures are medians over rounds of ms per call, with min and max, and the ratio
to the whole-batch row (chunk None) of the same kind and method. The load average is read
before and after. Results go to <out>/chunk_sizes.json and .md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from benchmarks.machine import loadavg, machine, now, versions


def _chunks(text: str) -> list[int | None]:
    out = []
    for part in text.split(","):
        part = part.strip().lower()
        if part:
            out.append(None if part in ("none", "whole") else int(part))
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.chunk_sizes",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--eval-batch", type=int, default=1000)
    ap.add_argument("--eval-chunks", default="none,32,125,250,500",
                    help="comma-separated chunk sizes, 'none' for the whole batch")
    ap.add_argument("--train-batch", type=int, default=128)
    ap.add_argument("--train-chunks", default="none,16,32,64")
    ap.add_argument("--methods", default="autodiff,manual")
    ap.add_argument("--conv", choices=("cpu", "plain"), default="cpu")
    ap.add_argument("--rounds", type=int, default=7, help="alternating rounds (default 7)")
    ap.add_argument("--calls", type=int, default=5, help="calls per contender per round (default 5)")
    ap.add_argument("--out", default="runs/bench_chunks")
    args = ap.parse_args(argv)
    try:
        args.eval_chunks, args.train_chunks = _chunks(args.eval_chunks), _chunks(args.train_chunks)
    except ValueError:
        ap.error("chunk lists must be comma-separated integers or 'none'")
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.rounds < 1 or args.calls < 1 or args.eval_batch < 1 or args.train_batch < 1:
        ap.error("--rounds, --calls and the batch sizes must be positive")
    return args


def contenders(args) -> dict:
    """{(kind, method, chunk): call} with every call compiled once; call() -> arrays to wait on."""
    import jax
    import numpy as np
    import optax

    import jaxnn
    from jaxnn import losses
    from jaxnn.models import LENET5_INPUT_SHAPE, lenet5

    model = lenet5("modern", conv=jaxnn.layers.CPUConv2D if args.conv == "cpu" else None)
    loss = losses.softmax_cross_entropy()
    _, params, state = model.init(jax.random.key(0), LENET5_INPUT_SHAPE)
    rng = np.random.default_rng(0)

    def batch(n):
        return (jax.device_put(rng.standard_normal((n, 28, 28, 1), np.float32)),
                jax.device_put(rng.integers(0, 10, n).astype(np.int32)))

    calls = {}
    xe, ye = batch(args.eval_batch)
    for c in args.eval_chunks:
        evaluate = jaxnn.eval_step(model, loss, chunk=c)
        calls["eval", "", c] = lambda f=evaluate: f(params, state, xe, ye)
    xt, yt = batch(args.train_batch)
    key = jax.random.key(1)
    for method in args.methods:
        for c in args.train_chunks:
            init, step = jaxnn.train_step(model, loss, optax.adam(1e-3), method, chunk=c)
            box = [init(params, state)]

            def call(step=step, box=box):
                box[0], metrics = step(box[0], (xt, yt), key)
                return metrics
            calls["train", method, c] = call
    return calls


def measure(args) -> dict:
    calls = contenders(args)
    first = {}
    for k, fn in calls.items():
        t = time.perf_counter()
        _block(fn())
        first[k] = time.perf_counter() - t
    times = {k: [] for k in calls}
    for _ in range(args.rounds):
        for k, fn in calls.items():
            t = time.perf_counter()
            for _ in range(args.calls):
                out = fn()
            _block(out)
            times[k].append((time.perf_counter() - t) / args.calls * 1e3)
    rows = []
    for (kind, method, c), ms in times.items():
        base = times.get((kind, method, None))
        med = statistics.median(ms)
        rows.append({"kind": kind, "method": method, "chunk": c, "median_ms": med,
                     "min_ms": min(ms), "max_ms": max(ms), "values_ms": ms,
                     "first_call_s": first[kind, method, c],
                     "x_whole": med / statistics.median(base) if base else None})
    return rows


def _block(out):
    import jax

    jax.block_until_ready(out)


def markdown(result: dict) -> str:
    m = result["machine"]
    a = result["args"]
    lines = [f"Modern LeNet-5 (conv={a['conv']}), chunk sizes — {result['date']}", "",
             f"Machine: {m['cpu']}, {m['cores']} cores; load average before {m['load_before']}, "
             f"after {m['load_after']}; median of {a['rounds']} alternating rounds of "
             f"{a['calls']} calls.", "",
             "| step | batch | method | chunk | ms/call median | min | max | × whole | first call s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        batch = a["eval_batch"] if r["kind"] == "eval" else a["train_batch"]
        ratio = f"{r['x_whole']:.2f}" if r["x_whole"] is not None else "–"
        lines.append(f"| {r['kind']} | {batch} | {r['method'] or '–'} | "
                     f"{r['chunk'] if r['chunk'] is not None else 'whole'} | {r['median_ms']:.2f} | "
                     f"{r['min_ms']:.2f} | {r['max_ms']:.2f} | {ratio} | {r['first_call_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    args = parse_args(argv)
    load_before = loadavg()
    rows = measure(args)
    result = {"benchmark": "lenet5-chunk-sizes", "date": now(), "machine": machine(load_before),
              "versions": versions(), "rows": rows,
              "args": {k: v for k, v in vars(args).items() if k != "out"}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "chunk_sizes.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (out / "chunk_sizes.md").write_text(table)
    print(table, flush=True)
    return result


if __name__ == "__main__":
    main()
