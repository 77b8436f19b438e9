"""The product inside a recurrent loop, alone: T steps of f ← σ(f A + d_t), f (B, N), A (N, N),
as a jitted `lax.scan` and as PyTorch's Python loop over time, side by side in one process.

    python -m benchmarks.loop_product                        # N = 128 (RateRNN), 279 (connectome)
    python -m benchmarks.loop_product --sizes 128,279,512 --torch-threads 2 --out runs/loop

Both networks of `benchmarks.rnn` spend most of a training step in this loop (the forward pass)
and in its mirror (the reverse pass, one product with a fixed matrix per step). The arithmetic of
a step is the same in both libraries, so the speed of this small product, one time step after
another, bounds how far jaxnn's step can lead PyTorch's. Reported per size N: the median ms per
loop over --repeats alternating rounds, GFLOP/s (2·T·B·N² per loop), jaxnn's speed ÷ PyTorch's;
and the same product over all T·B rows at once as one matrix product (the machine's matrix
speed, which the hand-written backward uses for its weight gradients).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import loadavg, machine, now, versions


def _ms(fn):
    t0 = time.perf_counter()
    fn()
    return 1e3 * (time.perf_counter() - t0)


def _data(n, batch, steps):
    """The loop's matrix A (n, n) and inputs d (steps, batch, n), float32, the same for both."""
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)
    return a, rng.standard_normal((steps, batch, n), np.float32)


def jax_contenders(n, batch, steps):
    """{"jax loop": fn, "jax one product": fn} on fixed random data; each fn blocks."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    a, d = (jnp.asarray(v) for v in _data(n, batch, steps))

    @jax.jit
    def loop(a, d):
        def step(f, d_t):
            f = jax.nn.sigmoid(f @ a + d_t)
            return f, f
        return lax.scan(step, jnp.zeros((batch, n), d.dtype), d)[1]

    one = jax.jit(lambda a, d: d.reshape(-1, n) @ a)
    return {"jax loop": lambda: loop(a, d).block_until_ready(),
            "jax one product": lambda: one(a, d).block_until_ready()}


def torch_contenders(n, batch, steps, threads):
    """{"torch loop": fn, "torch one product": fn}, or {} without PyTorch."""
    from benchmarks.baselines import torch_available

    if not torch_available():
        return {}
    import torch

    torch.set_num_threads(threads)
    a, d = (torch.from_numpy(v) for v in _data(n, batch, steps))

    def loop():
        with torch.no_grad():
            f = torch.zeros(batch, n)
            for t in range(steps):
                f = torch.sigmoid(f @ a + d[t])
        return f

    def one():
        with torch.no_grad():
            return d.reshape(-1, n) @ a

    return {"torch loop": loop, "torch one product": one}


def time_size(n, batch, steps, repeats, threads):
    """Median ms of every contender at size n, the contenders taking turns round by round."""
    fns = {**jax_contenders(n, batch, steps), **torch_contenders(n, batch, steps, threads)}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()  # compile / warm up before any timing
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_ms(fn))
    flop = 2.0 * steps * batch * n * n
    row = {"N": n, "ms": {}, "gflops": {}}
    for name, ts in times.items():
        ms = statistics.median(ts)
        row["ms"][name] = ms
        row["gflops"][name] = flop / (ms * 1e-3) / 1e9
    if "torch loop" in row["ms"]:
        row["loop_jax_over_torch"] = row["ms"]["torch loop"] / row["ms"]["jax loop"]
    return row


def markdown(result) -> str:
    lines = [f"B = {result['batch']}, T = {result['steps']}, torch threads {result['torch_threads']}, "
             f"median of {result['repeats']} alternating rounds; GFLOP/s (ms)", "",
             "| N | jax loop | torch loop | loop: jax ÷ torch speed | jax one product | torch one product |",
             "|---|---|---|---|---|---|"]
    def cell(r, name):
        if name not in r["ms"]:
            return "–"
        return f"{r['gflops'][name]:.0f} ({r['ms'][name]:.1f})"

    for r in result["rows"]:
        ratio = f"{r['loop_jax_over_torch']:.2f}×" if "loop_jax_over_torch" in r else "–"
        lines.append(f"| {r['N']} | {cell(r, 'jax loop')} | {cell(r, 'torch loop')} | {ratio} | "
                     f"{cell(r, 'jax one product')} | {cell(r, 'torch one product')} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="benchmarks.loop_product", description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="128,279", help="comma-separated N (default: 128,279)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1000, help="T, time steps per loop")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--torch-threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="folder for loop_product.json and .md")
    ap.add_argument("--quick", action="store_true", help="N = 16, T = 20, 2 rounds: a check that it runs")
    args = ap.parse_args(argv)
    try:
        sizes = [int(v) for v in args.sizes.split(",")]
    except ValueError:
        ap.error(f"--sizes must be comma-separated integers, got {args.sizes!r}")
    if args.quick:
        sizes, args.steps, args.repeats = [16], 20, 2
    if not sizes or min(sizes) < 1 or min(args.batch, args.steps, args.repeats, args.torch_threads) < 1:
        ap.error("--sizes, --batch, --steps, --repeats and --torch-threads must be positive")
    load = loadavg()
    result = {"benchmark": "loop-product", "date": now(), "versions": versions(),
              "batch": args.batch, "steps": args.steps, "repeats": args.repeats,
              "torch_threads": args.torch_threads, "rows": []}
    for n in sizes:
        row = time_size(n, args.batch, args.steps, args.repeats, args.torch_threads)
        result["rows"].append(row)
        print(n, {k: round(v, 1) for k, v in row["gflops"].items()}, "GFLOP/s", flush=True)
    result["machine"] = machine(load)
    text = markdown(result)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "loop_product.json").write_text(json.dumps(result, indent=2))
        (out / "loop_product.md").write_text(text)
    print(text, flush=True)
    return result


if __name__ == "__main__":
    main()
