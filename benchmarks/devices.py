"""LeNet-5 training steps on 1, 2, 4 ... CPU host devices, and in bf16 against float32.

    python -m benchmarks.devices                          # devices 1,2,4; 3 rounds of 40 steps
    python -m benchmarks.devices --devices 1,2 --rounds 5 --steps 60
    python -m benchmarks.devices --accuracy-epochs 1      # also: bf16 vs f32 test accuracy (MNIST)

XLA_FLAGS is read when jax starts, so each device count runs in its own process; the processes
alternate round by round (1 2 4 1 2 4 ...). Inside a process the variants alternate too:
float32 and bf16 compute (`jaxnn.train.precision`, float32 master params), and on D > 1 devices
the steps as `jaxnn.train.sharding.train_step` returns them ("paced": step k-1 is awaited after
step k is dispatched) and with a wait after every step ("blocking"). Each figure is ms per
step over `--steps` steps on one fixed global batch of 128 already on the devices, after
compilation; the table gives median, min and max over rounds and the ratio of medians
against 1 device float32. The load average is recorded before and after: the machine is
shared. `device_rows(...)` returns the rows for another benchmark to include.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.machine import loadavg, machine, now, versions

BATCH = 128
_CHILD = "benchmarks.devices"


def child(devices: int, steps: int, precisions: list[str]) -> dict:
    """In a process with `devices` host devices: {variant: seconds per step} for one round."""
    import jax
    import numpy as np
    import optax

    from jaxnn import losses
    from jaxnn.models import LENET5_INPUT_SHAPE, lenet5
    from jaxnn.train import sharding

    model, loss, opt = lenet5("modern"), losses.softmax_cross_entropy(), optax.adam(1e-3)
    mesh = sharding.make_mesh(devices)
    rng = np.random.default_rng(0)
    x, y = sharding.shard_batch(mesh, rng.standard_normal((BATCH, 28, 28, 1), np.float32),
                                rng.integers(0, 10, BATCH).astype(np.int32))
    _, params0, state0 = model.init(jax.random.key(0), LENET5_INPUT_SHAPE)
    key = jax.random.key(1)
    variants = {}
    for precision in precisions:
        dtype = None if precision == "float32" else precision
        step = sharding.train_step(model, loss, opt, mesh=mesh, compute_dtype=dtype,
                                   donate=False)
        variants[precision if devices == 1 else f"{precision} paced"] = (step, False)
        if devices > 1:
            variants[f"{precision} blocking"] = (step, True)
    times = {}
    for name, ((init, step), block) in variants.items():
        ts, _ = step(init(params0, state0), (x, y), key)  # compile
        jax.block_until_ready(ts)
        t = time.perf_counter()
        for _ in range(steps):
            ts, m = step(ts, (x, y), key)
            if block:
                jax.block_until_ready(m)
        jax.block_until_ready(ts)
        times[name] = (time.perf_counter() - t) / steps
    return times


def device_rows(devices=(1, 2, 4), rounds: int = 3, steps: int = 40,
                precisions=("float32", "bfloat16"), timeout_s: float = 600) -> list[dict]:
    """One row per (devices, variant): {"row", "median", "min", "max", "n", "values", "ratio"}
    in ms per step; a process that fails or times out is recorded in its row's "failures"."""
    from jaxnn.train.distributed import host_device_flags

    samples, failures = {}, {}
    for _ in range(rounds):
        for d in devices:
            env = dict(os.environ, XLA_FLAGS=host_device_flags(d, os.environ.get("XLA_FLAGS", "")))
            cmd = [sys.executable, "-m", _CHILD, "--child", str(d), "--steps", str(steps),
                   "--precisions", ",".join(precisions)]
            try:
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True,
                                      timeout=timeout_s)
                ok = proc.returncode == 0
                why = (proc.stderr.strip().splitlines() or ["?"])[-1] if not ok else ""
            except subprocess.TimeoutExpired:
                ok, why = False, f"timed out after {timeout_s:g} s"
            if not ok:
                failures.setdefault(d, []).append(why)
                continue
            for name, sec in json.loads(proc.stdout.strip().splitlines()[-1]).items():
                samples.setdefault((d, name), []).append(sec * 1e3)
    base = samples.get((1, "float32"))
    rows = []
    for (d, name), ms in sorted(samples.items()):
        med = statistics.median(ms)
        rows.append({"row": f"{d} device{'s' if d > 1 else ''}, {name}", "devices": d,
                     "median": med, "min": min(ms), "max": max(ms), "n": len(ms), "values": ms,
                     "ratio": med / statistics.median(base) if base else None,
                     "failures": failures.get(d, [])})
    for d, why in failures.items():
        if not any(r["devices"] == d for r in rows):
            rows.append({"row": f"{d} devices", "devices": d, "failures": why})
    return rows


def accuracy(epochs: int, seed: int = 0) -> list[dict]:
    """Test accuracy of modern LeNet-5 after `epochs` epochs (Adam 1e-3, batch 128, no
    augmentation, the same seed and batches) in float32 and in bf16 compute, one device."""
    import jax
    import numpy as np
    import optax

    from jaxnn import data as jdata
    from jaxnn import losses
    from jaxnn.models import LENET5_INPUT_SHAPE, lenet5
    from jaxnn.train import sharding

    def prep(split):
        images, labels = jdata.load("mnist", split)
        return jdata.add_channel_axis(jdata.normalize(images)), labels.astype(np.int32)

    (xtr, ytr), (xte, yte) = prep("train"), prep("test")
    mesh, model, loss = sharding.make_mesh(1), lenet5("modern"), losses.softmax_cross_entropy()
    out = []
    for dtype in ("float32", "bfloat16"):
        opt = optax.adam(1e-3)
        _, params, state = model.init(jax.random.key(seed), LENET5_INPUT_SHAPE)
        init, step = sharding.train_step(model, loss, opt, mesh=mesh, compute_dtype=dtype)
        evaluate = sharding.eval_step(model, loss, mesh=mesh, compute_dtype=dtype)
        ts, key = init(params, state), jax.random.key(seed + 1)
        t = time.perf_counter()
        for epoch in range(1, epochs + 1):
            order = jdata.epoch_permutation(len(xtr), seed, epoch)
            for i in range(len(xtr) // BATCH):
                idx = order[i * BATCH:(i + 1) * BATCH]
                ts, _ = step(ts, sharding.shard_batch(mesh, xtr[idx], ytr[idx]),
                             jax.random.fold_in(key, i))
        jax.block_until_ready(ts)
        seconds = time.perf_counter() - t
        correct = sum(int(evaluate(ts.params, ts.model_state, *sharding.shard_batch(
                          mesh, xte[i:i + 1000], yte[i:i + 1000]))["correct"])
                      for i in range(0, len(xte), 1000))
        out.append({"compute": dtype, "epochs": epochs, "test_acc": correct / len(xte),
                    "train_seconds": seconds})
    return out


def markdown(rows: list[dict]) -> str:
    lines = ["| row | ms/step median | min | max | × 1 device f32 | failed processes |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        if "median" not in r:
            lines.append(f"| {r['row']} | – | – | – | – | {len(r['failures'])}: "
                         f"{r['failures'][0]} |")
            continue
        ratio = f"{r['ratio']:.2f}" if r["ratio"] else "–"
        lines.append(f"| {r['row']} | {r['median']:.2f} | {r['min']:.2f} | {r['max']:.2f} | "
                     f"{ratio} | {len(r['failures'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.devices",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--devices", default="1,2,4", help="comma-separated host device counts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--precisions", default="float32,bfloat16")
    ap.add_argument("--accuracy-epochs", type=int, default=0,
                    help="also train f32 and bf16 this many epochs on MNIST (JAXNN_DATA_DIR)")
    ap.add_argument("--out", default="runs/bench_devices", help="JSON + Markdown go here")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    precisions = [p.strip() for p in args.precisions.split(",") if p.strip()]
    if not set(precisions) <= {"float32", "bfloat16"}:
        ap.error(f"--precisions must be float32 and/or bfloat16, got {args.precisions!r}")
    if args.child is not None:
        print(json.dumps(child(args.child, args.steps, precisions)))
        return 0
    try:
        devices = [int(d) for d in args.devices.split(",")]
    except ValueError:
        ap.error(f"--devices must be comma-separated integers, got {args.devices!r}")
    if not devices or min(devices) < 1 or BATCH % max(devices) or args.rounds < 1 or args.steps < 1:
        ap.error(f"--devices must divide {BATCH}; --rounds and --steps must be positive")
    load_before = loadavg()
    result = {"started": now(), "command": " ".join(sys.argv), "versions": versions(),
              "rows": device_rows(devices, args.rounds, args.steps, precisions)}
    if args.accuracy_epochs:
        result["accuracy"] = accuracy(args.accuracy_epochs)
    result["machine"] = machine(load_before)
    text = markdown(result["rows"])
    for a in result.get("accuracy", []):
        text += (f"\n\n{a['compute']}: test accuracy {100 * a['test_acc']:.2f}% after "
                 f"{a['epochs']} epoch(s), {a['train_seconds']:.1f} s training")
    m = result["machine"]
    text += (f"\n\n{result['started']}, {m['cpu']}, {m['cores']} cores; load average before "
             f"{m['load_before']}, after {m['load_after']}")
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "devices.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "devices.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
