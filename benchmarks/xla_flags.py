"""XLA:CPU flags against the default, on jaxnn's autodiff step; each flag set in its own process.

    python -m benchmarks.xla_flags [--rounds 3] [--steps 40]

XLA_FLAGS is read once when jax starts, so the contenders cannot share a process: each round starts
one process per flag set, in turn (A B C A B C ...), and each reports seconds per step over `--steps`
steps after compiling. Printed: median, min and max over rounds, and the ratio against no flags.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

FLAG_SETS = {
    "(none)": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "fast-runtime preset": "--xla_cpu_opt_preset=CPU_OPT_PRESET_FAST_RUNTIME",
    "no xnnpack/ynnpack fusion": "--xla_cpu_experimental_xnn_fusion_type= --xla_cpu_experimental_ynn_fusion_type=",
}

_CHILD = """
import json, sys, time
import jax, numpy as np, optax
import jaxnn
from jaxnn import losses
from jaxnn.models import LENET5_INPUT_SHAPE, lenet5
model, opt = lenet5("modern"), optax.adam(1e-3)
_, p, state = model.init(jax.random.key(0), LENET5_INPUT_SHAPE)
rng = np.random.default_rng(0)
x = jax.device_put(rng.standard_normal((128, 28, 28, 1), np.float32))
y = jax.device_put(rng.integers(0, 10, 128).astype(np.int32))
init, step = jaxnn.train_step(model, losses.softmax_cross_entropy(), opt)
ts, key = init(p, state), jax.random.key(1)
ts, _ = step(ts, (x, y), key); jax.block_until_ready(ts)
t = time.perf_counter()
for _ in range(int(sys.argv[1])):
    ts, _ = step(ts, (x, y), key)
jax.block_until_ready(ts)
print(json.dumps((time.perf_counter() - t) / int(sys.argv[1])))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.xla_flags")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args(argv)
    times = {name: [] for name in FLAG_SETS}
    for _ in range(args.rounds):
        for name, flags in FLAG_SETS.items():
            env = dict(os.environ, XLA_FLAGS=flags)
            proc = subprocess.run([sys.executable, "-c", _CHILD, str(args.steps)], env=env,
                                  capture_output=True, text=True)
            if proc.returncode:
                print(f"{name}: failed: {proc.stderr.strip().splitlines()[-1:]}", flush=True)
                continue
            times[name].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    base = statistics.median(times["(none)"])
    for name, ts in times.items():
        if ts:
            med = statistics.median(ts)
            print(f"{name:28s} {med * 1e3:7.2f} ms/step [{min(ts) * 1e3:.2f} {max(ts) * 1e3:.2f}]"
                  f"  × {med / base:.2f}   XLA_FLAGS={FLAG_SETS[name]!r}", flush=True)


if __name__ == "__main__":
    main()
