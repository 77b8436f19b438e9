"""Time the modern LeNet-5 training step in jaxnn and its neighbours, side by side in one run.

    python -m benchmarks.run                # full: 468-step epochs, 3 repeats
    python -m benchmarks.run --quick        # about a minute: 10-step windows scaled to an epoch
    python -m benchmarks.run --xla-flags "--xla_cpu_use_onednn=true"   # set before jax starts

Rows (batch 128, Adam 1e-3, softmax cross-entropy, MNIST 28×28×1):
  step/*   one `jaxnn.train_step` call (compiled) on a fixed batch, autodiff vs manual, whole
           batch; seconds per step.
  epoch/*  one epoch (468 steps, the ragged remainder dropped) per contender: jaxnn autodiff, jaxnn
           manual, Flax linen, stax, PyTorch. The dataset is put on the device once; each step picks
           its batch there (`order[i]`). With --steps S < 468, S steps are timed and scaled by 468/S.
Contenders run in turn inside each repeat (A B C A B C ...), so a busy spell of the machine hits all
of them; every figure is the median over repeats with its min and max, and the ratio of medians
against `epoch/jaxnn autodiff` (or `step/jaxnn autodiff`). Compilation (the first call) is timed
apart from the steady state. Results go to <out>/lenet_epoch.json and <out>/lenet_epoch.md.

Then the batch-size sweep (`benchmarks/sweep.py`; `--no-sweep` skips it, `--sweep-only` runs it
alone): µs per image of the training and evaluation steps at batch 16 … 2048, jaxnn (both methods,
whole batch and at explicit chunk sizes), stax and PyTorch, each with its ratio to PyTorch, into
<out>/batch_sweep.json, .md and .png.

Data: MNIST train through `jaxnn.data` (never downloaded here). Missing files: a note, then random
data of the same shape. A file that is there but corrupt: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from benchmarks.machine import loadavg, machine, now, versions
from benchmarks.sweep import BATCHES

STEPS_PER_EPOCH = 60_000 // 128  # 468, ragged last batch dropped
BATCH = 128
CONTENDERS = ("jaxnn autodiff", "jaxnn manual", "jaxnn bn autodiff", "flax linen", "stax", "pytorch",
              "pytorch 1 thread")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per contender (default 3)")
    ap.add_argument("--steps", type=int, default=STEPS_PER_EPOCH,
                    help="steps timed per epoch repeat, scaled to 468 (default: a full epoch)")
    ap.add_argument("--step-calls", type=int, default=50, help="calls per step/* timing (default 50)")
    ap.add_argument("--only", default=",".join(CONTENDERS),
                    help=f"comma-separated epoch contenders (default: all of {', '.join(CONTENDERS)})")
    ap.add_argument("--no-step-rows", action="store_true", help="skip the step/* rows")
    ap.add_argument("--quick", action="store_true",
                    help="--repeats 2 --steps 10 --step-calls 10")
    ap.add_argument("--xla-flags", default=None, help="appended to XLA_FLAGS before jax starts")
    ap.add_argument("--torch-threads", type=int, default=os.cpu_count(),
                    help="torch.set_num_threads (default: the number of cores)")
    ap.add_argument("--out", default="runs/bench", help="output directory (default runs/bench)")
    sw = ap.add_argument_group("batch-size sweep (benchmarks/sweep.py)")
    sw.add_argument("--batches", default=",".join(map(str, BATCHES)),
                    help=f"comma-separated batch sizes (default {','.join(map(str, BATCHES))})")
    sw.add_argument("--sweep-repeats", type=int, default=5, help="alternating turns per batch size (default 5)")
    sw.add_argument("--sweep-images", type=int, default=2048,
                    help="images per contender per turn: ceil(this / batch) calls (default 2048)")
    which = sw.add_mutually_exclusive_group()
    which.add_argument("--no-sweep", action="store_true", help="skip the sweep")
    which.add_argument("--sweep-only", action="store_true", help="run the sweep alone")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.steps, args.step_calls = 2, 10, 10
    args.only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(args.only) - set(CONTENDERS)
    if unknown:
        ap.error(f"unknown contenders {sorted(unknown)}; choose from {CONTENDERS}")
    if not 1 <= args.steps <= STEPS_PER_EPOCH:
        ap.error(f"--steps must be in [1, {STEPS_PER_EPOCH}]")
    try:
        args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        ap.error(f"--batches must be comma-separated integers, got {args.batches!r}")
    if not args.batches or not all(1 <= b <= BATCH * STEPS_PER_EPOCH for b in args.batches):
        ap.error(f"--batches must be in [1, {BATCH * STEPS_PER_EPOCH}]")
    if args.sweep_repeats < 1 or args.sweep_images < 1:
        ap.error("--sweep-repeats and --sweep-images must be positive")
    return args


# ------------------------------------------------------------------------------- the data
def load_data(steps_per_epoch: int):
    """(images (N, 28, 28, 1) float32, labels (N,) int32, source) as numpy; N = 128 · 468.

    Without the MNIST files (nothing found where `jaxnn.data` looks, nothing downloaded) it
    prints a note and returns random data of the same shape; a file that is there but corrupt
    or fails its checksum raises `DataError` (the command prints it as one line, exit 2).
    """
    import numpy as np

    from jaxnn.data import add_channel_axis, load_mnist, normalize

    n = BATCH * steps_per_epoch
    try:
        images, labels = load_mnist("train", download=False)
    except FileNotFoundError:
        print("note: the MNIST training files are not where jaxnn.data looks (set JAXNN_DATA_DIR to "
              "time on them); timing on random data of the same shape", flush=True)
        rng = np.random.default_rng(0)
        return (rng.standard_normal((n, 28, 28, 1), np.float32),
                rng.integers(0, 10, n).astype(np.int32), "random (MNIST-shaped)")
    return (add_channel_axis(normalize(images[:n])), labels[:n].astype(np.int32),
            "MNIST train (jaxnn.data)")


# ----------------------------------------------------------------------------- statistics
def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "n": len(values), "values": values}


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


# ------------------------------------------------------------------------------ the rows
def step_rows(args, x, y) -> list[dict]:
    """step/*: jaxnn.train_step on one fixed batch, autodiff vs manual, whole batch."""
    import jax
    import optax

    import jaxnn
    from jaxnn import losses
    from jaxnn.models import LENET5_INPUT_SHAPE, lenet5

    # The convolution the experiments pick on this backend (CPUConv2D on XLA:CPU).
    conv = jaxnn.layers.CPUConv2D if jax.default_backend() == "cpu" else None
    model, loss = lenet5("modern", conv=conv), losses.softmax_cross_entropy()
    _, params0, state0 = model.init(jax.random.key(0), LENET5_INPUT_SHAPE)
    batch = (jax.device_put(x[:BATCH]), jax.device_put(y[:BATCH]))
    key = jax.random.key(1)
    variants = {}
    for method in ("autodiff", "manual"):
        init, step = jaxnn.train_step(model, loss, optax.adam(1e-3), method)
        ts = init(params0, state0)
        first = timed(lambda step=step, ts=ts: jax.block_until_ready(step(ts, batch, key)))
        variants[f"step/jaxnn {method}"] = (step, ts, first)
    times = {k: [] for k in variants}
    for _ in range(args.repeats):
        for name, (step, ts, _) in variants.items():
            def run(step=step, ts=ts):
                s = ts
                for _ in range(args.step_calls):
                    s, _m = step(s, batch, key)
                jax.block_until_ready(s)
            times[name].append(timed(run) / args.step_calls)
    rows = []
    for name, (_, _, first) in variants.items():
        row = {"name": name, "unit": "s/step", **summary(times[name])}
        row["compile_s"] = first - row["median"]  # tracing + compilation + one step, less a step
        rows.append(row)
    return rows


def epoch_rows(args, x, y) -> list[dict]:
    """epoch/*: one epoch (or --steps scaled to one) per contender, alternating."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks import baselines

    contenders, feeds = [], {}
    rng = np.random.default_rng(0)
    orders = [rng.permutation(len(x))[: STEPS_PER_EPOCH * BATCH].reshape(STEPS_PER_EPOCH, BATCH)
              for _ in range(args.repeats + 1)]
    for name in args.only:
        if name.startswith("pytorch"):
            if not baselines.torch_available():
                print(f"note: torch is not installed; skipping the {name} row", flush=True)
                continue
            import torch
            c = baselines.make_torch(threads=1 if name == "pytorch 1 thread" else args.torch_threads)
            feeds[name] = (torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))),
                           torch.from_numpy(y.astype(np.int64)),
                           [torch.from_numpy(o) for o in orders])
        else:
            c = {"jaxnn autodiff": lambda: baselines.make_jaxnn("autodiff"),
                 "jaxnn manual": lambda: baselines.make_jaxnn("manual"),
                 "jaxnn bn autodiff": lambda: baselines.make_jaxnn_bn("autodiff"),
                 "flax linen": baselines.make_flax_linen, "stax": baselines.make_stax}[name]()
            feeds[name] = (jax.device_put(x), jax.device_put(y),
                           [jax.device_put(jnp.asarray(o, jnp.int32)) for o in orders])
        contenders.append(c)

    states, compile_s = {}, {}
    for c in contenders:
        images, labels, order = feeds[c.name]
        state = c.state

        def first(c=c, images=images, labels=labels, order=order):
            nonlocal state
            state, _ = c.step(state, images, labels, order[0], 0)
            c.sync(state)
        compile_s[c.name] = timed(first)
        states[c.name] = state

    times = {c.name: [] for c in contenders}
    cpu = {c.name: [] for c in contenders}
    scale = STEPS_PER_EPOCH / args.steps
    for r in range(args.repeats):
        for c in contenders:
            images, labels, order = feeds[c.name]
            state = states[c.name]
            t, p = time.perf_counter(), time.process_time()
            for i in range(args.steps):
                state, _ = c.step(state, images, labels, order[r + 1], i)
            c.sync(state)
            times[c.name].append((time.perf_counter() - t) * scale)
            cpu[c.name].append((time.process_time() - p) * scale)
            states[c.name] = state
    rows = []
    for c in contenders:
        row = {"name": f"epoch/{c.name}", "unit": "s/epoch", **summary(times[c.name]),
               "cpu_s": summary(cpu[c.name])}
        step_median = row["median"] / STEPS_PER_EPOCH
        row["compile_s"] = None if c.name.startswith("pytorch") else compile_s[c.name] - step_median
        rows.append(row)
    return rows


def add_ratios(rows: list[dict]) -> None:
    base = {r["name"].split("/")[0]: r["median"] for r in rows if r["name"].endswith("/jaxnn autodiff")}
    for r in rows:
        b = base.get(r["name"].split("/")[0])
        r["ratio_vs_autodiff"] = r["median"] / b if b else None


def markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Modern LeNet-5, batch 128, Adam 1e-3 — {result['date']}",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores; load average before {m['load_before']}, "
        f"after {m['load_after']}; data: {result['data']}; torch threads: {result['torch_threads']}; "
        f"XLA_FLAGS: {result['xla_flags'] or '(none)'}",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v),
        f"Repeats: {result['repeats']}; epoch rows time {result['steps']} steps scaled to "
        f"{STEPS_PER_EPOCH}.",
        "",
        "| row | median | min | max | × jaxnn autodiff | CPU-s median | compile s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        unit = "ms/step" if r["unit"] == "s/step" else "s/epoch"
        k = 1e3 if unit == "ms/step" else 1.0
        cpu_s = f"{r['cpu_s']['median']:.2f}" if "cpu_s" in r else ""
        comp = f"{r['compile_s']:.2f}" if r.get("compile_s") is not None else "–"
        ratio = f"{r['ratio_vs_autodiff']:.2f}" if r.get("ratio_vs_autodiff") else ""
        lines.append(f"| {r['name']} ({unit}) | {r['median'] * k:.2f} | {r['min'] * k:.2f} | "
                     f"{r['max'] * k:.2f} | {ratio} | {cpu_s} | {comp} |")
    return "\n".join(lines) + "\n"


def run_sweep(args, x, y, load_before, source) -> dict:
    """The batch-size sweep into <out>/batch_sweep.{json,md,png}."""
    from benchmarks import sweep

    print(f"batch-size sweep over {args.batches}", flush=True)
    result = sweep.sweep(x, y, args.batches, args.sweep_repeats, args.sweep_images,
                         args.torch_threads, log=lambda line: print(line, flush=True))
    result.update({"benchmark": "lenet5-modern-batch-sweep", "date": now(), "data": source,
                   "machine": machine(load_before), "versions": versions(),
                   "xla_flags": os.environ.get("XLA_FLAGS", "")})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "batch_sweep.json").write_text(json.dumps(result, indent=2))
    m = result["machine"]
    head = (f"Modern LeNet-5, cost per image against the batch size — {result['date']}\n\n"
            f"Machine: {m['cpu']}, {m['cores']} cores; load average before {m['load_before']}, after "
            f"{m['load_after']}; data: {source}; torch threads: {result['torch_threads']} and 1; "
            f"{args.sweep_repeats} alternating turns of ≥ {args.sweep_images} images per contender.\n"
            "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items() if v) + "\n\n")
    table = head + sweep.markdown(result)
    (out / "batch_sweep.md").write_text(table)
    sweep.plot(result, out / "batch_sweep.png")
    print(table, flush=True)
    return result


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.xla_flags:
        if "jax" in sys.modules:
            raise RuntimeError("--xla-flags must be set before jax is imported")
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    from jaxnn.data import DataError

    load_before = loadavg()
    try:
        x, y, source = load_data(STEPS_PER_EPOCH)
    except DataError as err:
        print(f"benchmarks.run: {' '.join(str(err).split())}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.sweep_only:
        return {"sweep": run_sweep(args, x, y, load_before, source)}
    rows = [] if args.no_step_rows else step_rows(args, x, y)
    rows += epoch_rows(args, x, y)
    add_ratios(rows)
    result = {
        "benchmark": "lenet5-modern-train", "date": now(), "machine": machine(load_before),
        "versions": versions(), "data": source, "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "torch_threads": args.torch_threads if "pytorch" in args.only else None,
        "torch_threads_note": "each torch step sets its own thread count (the 1-thread row uses 1)",
        "repeats": args.repeats, "steps": args.steps, "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "lenet_epoch.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (out / "lenet_epoch.md").write_text(table)
    print(table, flush=True)
    if not args.no_sweep:
        result["sweep"] = run_sweep(args, x, y, loadavg(), source)
    return result


if __name__ == "__main__":
    main()
