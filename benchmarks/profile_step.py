"""Where the time of one jaxnn LeNet-5 train step goes (modern, batch 128, Adam 1e-3).

    python -m benchmarks.profile_step                  # both methods, trace + host overhead + layers
    python -m benchmarks.profile_step --steps 30 --top 20 --out runs/profile
    python -m benchmarks.profile_step --no-layers      # skip the per-layer manual-vs-vjp timings

1. Per-op table: `jax.profiler.trace` of --steps calls of the compiled step (method "autodiff" and
   "manual") into <out>/<method>/; the .xplane.pb is read with `jax.profiler.ProfileData`, and
   every XLA:CPU thunk event (it carries an `hlo_op` stat) is summed per HLO instruction and divided
   by the number of steps. Each op is labelled with its opcode / fusion kind and the `op_name`
   metadata of the optimised HLO (which jnp/lax call it came from).
2. Host overhead: per step, the wall time of a blocking call against the time the thunk executor
   spends running the program (the `ThunkExecutor::Execute` span), and a trivial jitted call with
   the same argument pytree (dispatch + argument handling, no compute).
3. Per layer (--layers, default on): forward + backward at the LeNet shapes, the hand-written
   `forward`/`backward` against `jax.vjp(layer)`, both jitted, alternating, medians of wall
   and CPU time (time.process_time).

The machine may be busy; all comparisons inside one run alternate contenders and report medians.
"""

from __future__ import annotations

import argparse
import collections
import glob
import re
import statistics
import time
from pathlib import Path

BATCH = 128


def parse_args(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.profile_step", description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20, help="steps traced per method (default 20)")
    ap.add_argument("--top", type=int, default=15, help="rows of the per-op table (default 15)")
    ap.add_argument("--repeats", type=int, default=7, help="repeats of the timing loops (default 7)")
    ap.add_argument("--calls", type=int, default=20, help="calls per timing repeat (default 20)")
    ap.add_argument("--no-layers", dest="layers", action="store_false", help="skip per-layer timings")
    ap.add_argument("--out", default="runs/profile", help="trace directory (default runs/profile)")
    return ap.parse_args(argv)


def build(method):
    import jax
    import optax

    import jaxnn
    from jaxnn import losses
    from jaxnn.models import LENET5_INPUT_SHAPE, lenet5

    model, loss = lenet5("modern"), losses.softmax_cross_entropy()
    opt = optax.adam(1e-3)
    _, params, state = model.init(jax.random.key(0), LENET5_INPUT_SHAPE)
    x = jax.random.normal(jax.random.key(1), (BATCH, 28, 28, 1))
    y = jax.random.randint(jax.random.key(2), (BATCH,), 0, 10)
    init, step = jaxnn.train_step(model, loss, opt, method)
    args = (init(params, state), (x, y), jax.random.key(3))
    jax.block_until_ready(step(*args))
    return step, args


# ------------------------------------------------------------------------------ HLO labels
def hlo_labels(compiled_text: str) -> dict[str, str]:
    """instruction name -> "opcode[/fusion kind] shape  op_name" from the optimised HLO text."""
    labels = {}
    pat = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\S+?)(?:\{[^}]*\})? (\w[\w\-]*)\(")
    for line in compiled_text.splitlines():
        m = pat.match(line)
        if not m:
            continue
        name, shape, opcode = m.groups()
        kind = re.search(r"kind=(k\w+)", line)
        op_name = re.search(r'op_name="([^"]*)"', line)
        what = opcode + (f"/{kind.group(1)[1:]}" if kind else "")
        src = op_name.group(1).replace("jit(step)/", "") if op_name else ""
        labels.setdefault(name, f"{what} {shape} {src}".strip())
    return labels


# ------------------------------------------------------------------------------ the trace
def trace_ops(method, steps, out):
    step, args = build(method)
    return trace_calls(step, args, steps, Path(out) / method)


def trace_calls(fn, args, steps, tdir):
    """Trace `steps` calls of the jitted `fn(*args)` into `tdir`; per HLO op, ms per call.

    Returns {"ops": {op: ms per call}, "labels": {op: "opcode shape source"}, "execute_ms",
    "pjit_ms" (per call: the program's span, and dispatch to the first op), "trace": path}.
    """
    import jax
    from jax.profiler import ProfileData

    labels = hlo_labels(fn.lower(*args).compile().as_text())
    with jax.profiler.trace(str(tdir)):
        for _ in range(steps):
            jax.block_until_ready(fn(*args))
    path = max(glob.glob(str(tdir / "**" / "*.xplane.pb"), recursive=True), key=lambda p: Path(p).stat().st_mtime)
    data = ProfileData.from_file(path)
    per_op = collections.defaultdict(float)
    thunks, starts = [], []  # (start, end) of every thunk; start of every dispatch
    for plane in data.planes:
        if plane.name != "/host:CPU":
            continue
        for line in plane.lines:
            for ev in line.events:
                if ev.name.startswith("PjitFunction("):
                    starts.append(ev.start_ns)
                    continue
                stats = dict(ev.stats)
                if "hlo_op" in stats and not ev.name.startswith("end:"):
                    per_op[stats["hlo_op"]] += ev.duration_ns
                    thunks.append((ev.start_ns, ev.end_ns))
    # Per step (the thunks between one dispatch and the next): the program's span from its first
    # op to its last, and the host time from the dispatch to the first op.
    starts.sort()
    thunks.sort()
    execute, pjit = [], []
    for i, s0 in enumerate(starts):
        s1 = starts[i + 1] if i + 1 < len(starts) else float("inf")
        inside = [t for t in thunks if s0 <= t[0] < s1]
        if inside:
            execute.append((max(e for _, e in inside) - inside[0][0]) / 1e6)
            pjit.append((inside[0][0] - s0) / 1e6)
    ops = {k: v / steps / 1e6 for k, v in per_op.items()}  # ms per step
    return {"ops": ops, "labels": labels, "execute_ms": execute, "pjit_ms": pjit, "trace": path}


def print_ops(method, res, top):
    ops, labels = res["ops"], res["labels"]
    total = sum(ops.values())
    ex = statistics.median(res["execute_ms"]) if res["execute_ms"] else float("nan")
    lat = statistics.median(res["pjit_ms"]) if res["pjit_ms"] else float("nan")
    print(f"\n## {method}: sum of op time {total:.2f} ms/step (summed over threads); program span "
          f"(first op start to last op end, median) {ex:.2f} ms; dispatch to first op {lat:.3f} ms; "
          f"{len(ops)} ops")
    print("| rank | op | ms/step | % | what (opcode/fusion kind, shape, source op) |")
    print("|---|---|---|---|---|")
    for i, (name, ms) in enumerate(sorted(ops.items(), key=lambda kv: -kv[1])[:top], 1):
        print(f"| {i} | {name} | {ms:.3f} | {100 * ms / total:.1f} | {labels.get(name, '?')[:110]} |")


# ------------------------------------------------------------------------------ host overhead
def host_overhead(repeats, calls):
    import jax

    rows = {}
    contenders = {}
    for method in ("autodiff", "manual"):
        step, args = build(method)
        contenders[f"step {method}"] = (step, args)
    _, args = contenders["step autodiff"]
    trivial = jax.jit(lambda ts, batch, key: (ts, {"loss": batch[0][0, 0, 0, 0]}))
    jax.block_until_ready(trivial(*args))
    contenders["trivial jit, same args"] = (trivial, args)
    times = {k: [] for k in contenders}
    cpu = {k: [] for k in contenders}
    for _ in range(repeats):
        for name, (fn, a) in contenders.items():
            t, c = time.perf_counter(), time.process_time()
            for _ in range(calls):
                jax.block_until_ready(fn(*a))
            times[name].append((time.perf_counter() - t) / calls * 1e3)
            cpu[name].append((time.process_time() - c) / calls * 1e3)
    for k in contenders:
        rows[k] = (statistics.median(times[k]), min(times[k]), statistics.median(cpu[k]))
    return rows


# ------------------------------------------------------------------------------ per layer
def layer_table(repeats, calls):
    import jax
    import jax.numpy as jnp

    from jaxnn.models import LENET5_INPUT_SHAPE, lenet5_stages

    stages = lenet5_stages("modern")
    key = jax.random.key(0)
    shape = (BATCH, *LENET5_INPUT_SHAPE[1:])
    cases = []
    for name, layer in stages:
        key, k1, k2, k3 = jax.random.split(key, 4)
        out_shape, params, state = layer.init(k1, shape)
        x = jax.random.normal(k2, shape)
        dy = jax.random.normal(k3, out_shape)

        def manual(p, x, dy, layer=layer, state=state):
            y, r, _ = layer.forward(p, state, x, train=True)
            dp, dx = layer.backward(p, r, dy)
            return y, dp, dx

        def auto(p, x, dy, layer=layer):
            y, vjp = jax.vjp(layer, p, x)
            dp, dx = vjp(dy)
            return y, dp, dx

        fns = {"manual": jax.jit(manual), "vjp": jax.jit(auto)}
        outs = {k: jax.block_until_ready(f(params, x, dy)) for k, f in fns.items()}
        err = max((float(jnp.max(jnp.abs(a - b)) / (1e-6 + float(jnp.max(jnp.abs(b)))))
                   for a, b in zip(jax.tree.leaves(outs["manual"]), jax.tree.leaves(outs["vjp"]))),
                  default=0.0)
        cases.append((f"{name} {tuple(shape)}", fns, (params, x, dy), err))
        shape = out_shape
    rows = []
    for label, fns, a, err in cases:
        t = {k: [] for k in fns}
        c = {k: [] for k in fns}
        for _ in range(repeats):
            for k, f in fns.items():
                t0, c0 = time.perf_counter(), time.process_time()
                for _ in range(calls):
                    jax.block_until_ready(f(*a))
                t[k].append((time.perf_counter() - t0) / calls * 1e3)
                c[k].append((time.process_time() - c0) / calls * 1e3)
        rows.append((label, {k: statistics.median(v) for k, v in t.items()},
                     {k: statistics.median(v) for k, v in c.items()}, err))
    return rows


def main(argv=None):
    args = parse_args(argv)
    import jax

    print(f"jax {jax.__version__}; load average {Path('/proc/loadavg').read_text().split()[:3]}")
    for method in ("autodiff", "manual"):
        res = trace_ops(method, args.steps, args.out)
        print_ops(method, res, args.top)
        print(f"(trace: {res['trace']})")

    print("\n## Host overhead (blocking calls, medians over repeats)")
    print("| call | wall ms | min wall ms | CPU ms |")
    print("|---|---|---|---|")
    for k, (med, lo, c) in host_overhead(args.repeats, args.calls).items():
        print(f"| {k} | {med:.2f} | {lo:.2f} | {c:.2f} |")

    if args.layers:
        print("\n## Per layer: forward + backward, hand-written vs jax.vjp (jitted, medians)")
        print("| layer (input shape) | manual ms | vjp ms | manual/vjp | manual CPU ms | vjp CPU ms | max rel. diff |")
        print("|---|---|---|---|---|---|---|")
        for label, t, c, err in layer_table(args.repeats, max(5, args.calls // 2)):
            print(f"| {label} | {t['manual']:.3f} | {t['vjp']:.3f} | {t['manual'] / t['vjp']:.2f} | "
                  f"{c['manual']:.3f} | {c['vjp']:.3f} | {err:.1e} |")
    print(f"\nload average after {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
