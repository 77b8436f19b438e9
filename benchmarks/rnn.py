"""Training the rate network: steps per second and peak memory against the sequence length,
jaxnn's hand-written BPTT and autodiff side by side with the same network in PyTorch.

    python -m benchmarks.rnn --out runs/bench_rnn [--lengths 50,100,200,500,1000]
    python -m benchmarks.rnn --network connectome --out runs/bench_connectome

`--network rate` (default) times `RateRNN`; `--network connectome` the C. elegans network of
`experiments.connectome --experiment whole` (279 neurons on the Varshney 2011 wiring, signs free
per synapse, gap junctions, trained time constants, noise; the matrices regenerated first, see
`experiments.connectome.regenerate`), with the same dynamics written for PyTorch beside it.

The network everywhere: H units, Dale's law (80 % excitatory, w ≥ 0 through a rectifier,
sign per presynaptic unit), α = dt/τ = 0.2, tanh rates, recurrent noise σ = 0.05, readout
to 3 classes, masked cross-entropy at every step, Adam(1e-3), batch B of random inputs.
PyTorch is written as neurogym's and PsychRNN-style examples write it: an `nn.Module` whose
forward loops over time steps in Python, `torch.randn` noise per step, `loss.backward()`.

Both: batch 64, 3 input channels, 3 outputs, masked cross-entropy at every step, Adam(1e-3).

Timing: one process, the contenders take turns (A B C A B C ...) for `--repeats` rounds of
`--steps` steps each, after a first (compiling) call; medians and ratios to PyTorch, and each
contender's minor page faults per step over its rounds (memory mapped anew by a step: XLA:CPU
allocates a step's temporary buffers on every call, and glibc maps blocks that large afresh
unless told otherwise, e.g. `MALLOC_MMAP_MAX_=0`; the `MALLOC_*` settings of the run are
recorded).
Peak memory: each contender and length in a fresh process: after a first step, the peak
resident set size during three steps minus the resident size before them (noisy: a few MiB);
for jaxnn also XLA's own figure, the compiled step's temporary buffers (memory_analysis).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import loadavg, machine, now, versions

CONTENDERS = ("jaxnn manual", "jaxnn autodiff", "pytorch")
HIDDEN, BATCH, N_IN, N_OUT, ALPHA, NOISE, EXC = 128, 64, 3, 3, 0.2, 0.05, 0.8


def _data(T):
    rng = np.random.default_rng(0)
    return (rng.standard_normal((BATCH, T, N_IN)).astype(np.float32),
            rng.integers(0, N_OUT, (BATCH, T)).astype(np.int32), np.ones((BATCH, T), np.float32))


def connectome_spec():
    """The spec of `experiments.connectome --experiment whole`'s real-wiring network."""
    from experiments.connectome import whole
    from jaxnn.data.connectome import load_connectome
    from jaxnn.neuro.connectome import Wiring, connectome_spec

    full = load_connectome("varshney2011")
    wiring = Wiring(tuple(full.neurons), np.asarray(full.chemical, np.float64),
                    np.asarray(full.gap, np.float64))
    return connectome_spec(wiring, whole.INPUTS, whole.READOUT, signs="synapse", tau=100.0,
                           dt=100.0 * ALPHA, noise=NOISE, rec_gain=1.0, readout_scale=10.0)


def make_jaxnn(method, T, threads, network="rate"):
    """A step () -> loss for jaxnn.train_step on a fixed batch of length T."""
    import jax
    import optax

    import jaxnn as nn
    from jaxnn.layers.recurrent import RateRNN
    from jaxnn.neuro import tasks
    from jaxnn.neuro.connectome import connectome_layer

    if network == "connectome":
        layer = connectome_layer(connectome_spec())
    else:
        layer = RateRNN(HIDDEN, N_OUT, tau=100.0, dt=100.0 * ALPHA, noise=NOISE, dale=True,
                        exc_fraction=EXC)
    _, params, state = layer.init(jax.random.key(0), (BATCH, T, N_IN))
    init, step = nn.train_step(layer, tasks.masked_cross_entropy(), optax.adam(1e-3), method)
    x, labels, weight = (jax.device_put(a) for a in _data(T))
    box = {"s": init(params, state), "i": 0}

    def run():
        box["i"] += 1
        box["s"], m = step(box["s"], (x, (labels, weight)), jax.random.key(box["i"]))
        return float(m["loss"])

    memory = step.lower(box["s"], (x, (labels, weight)), jax.random.key(0)).compile().memory_analysis()
    run.xla_temp_mib = memory.temp_size_in_bytes / 2 ** 20
    return run


def torch_networks():
    """The two networks written for PyTorch: (EIRNN, Connectome) classes."""
    import torch

    n_exc = int(round(EXC * HIDDEN))

    class EIRNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.input2h = torch.nn.Linear(N_IN, HIDDEN)
            self.h2h = torch.nn.Parameter(torch.rand(HIDDEN, HIDDEN) / HIDDEN ** 0.5)
            sign = torch.ones(HIDDEN)
            sign[n_exc:] = -1
            self.register_buffer("sign", sign[:, None])
            self.fc = torch.nn.Linear(HIDDEN, N_OUT)

        def forward(self, x):  # x: (T, B, in), time-major as in neurogym
            w = torch.relu(self.h2h) * self.sign
            f = torch.zeros(x.shape[1], HIDDEN)
            rates = []
            for t in range(x.shape[0]):
                h = torch.tanh(f @ w + self.input2h(x[t]))
                f = (1 - ALPHA) * f + ALPHA * h + (2 * ALPHA) ** 0.5 * NOISE * torch.randn_like(f)
                rates.append(f)
            return self.fc(torch.stack(rates, 0))

    class Connectome(torch.nn.Module):
        """`jaxnn.neuro.connectome`'s dynamics (signs="synapse"), a Python loop over time."""

        def __init__(self, spec):
            super().__init__()
            n = len(spec.neurons)
            t = lambda a: torch.tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
            self.register_buffer("C", t(spec.chemical))
            self.register_buffer("L", t(np.diag(spec.gap.sum(1)) - spec.gap))
            self.register_buffer("M_in", t(spec.input_mask))
            self.register_buffer("R", t(spec.readout * spec.readout_scale))
            self.g0, self.noise = spec.kappa * spec.gap_gain, (2 * ALPHA) ** 0.5 * spec.noise
            start = torch.where(torch.rand(n, n) < 0.5, 1.0, -1.0)
            self.w = torch.nn.Parameter(start * torch.exp(0.1 * torch.randn(n, n)))
            self.gap = torch.nn.Parameter(torch.zeros(()))
            self.theta = torch.nn.Parameter(torch.full((n,), float(np.log(ALPHA / (1 - ALPHA)))))
            self.u = torch.nn.Parameter(torch.zeros(self.M_in.shape))
            self.b = torch.nn.Parameter(torch.zeros(n))

        def forward(self, x):  # x: (T, B, in)
            A = self.C * self.w - self.g0 * torch.exp(self.gap) * self.L
            alpha, U = torch.sigmoid(self.theta), self.M_in * torch.exp(self.u)
            v = torch.zeros(x.shape[1], A.shape[0])
            f = torch.sigmoid(v)
            rates = []
            for t in range(x.shape[0]):
                v = v + alpha * (f @ A + x[t] @ U + self.b - v) + self.noise * torch.randn_like(v)
                f = torch.sigmoid(v)
                rates.append(f)
            return torch.stack(rates, 0) @ self.R

    return EIRNN, Connectome


def make_pytorch(T, threads, network="rate"):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    EIRNN, Connectome = torch_networks()
    net = Connectome(connectome_spec()) if network == "connectome" else EIRNN()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    x, labels, _ = _data(T)
    x = torch.from_numpy(np.ascontiguousarray(x.transpose(1, 0, 2)))
    labels = torch.from_numpy(labels.T.astype(np.int64))

    def run():
        opt.zero_grad()
        y = net(x)
        loss = criterion(y.reshape(-1, N_OUT), labels.reshape(-1))
        loss.backward()
        opt.step()
        return float(loss.detach())

    return run


def make(name, T, threads, network="rate"):
    return (make_pytorch(T, threads, network) if name == "pytorch"
            else make_jaxnn(name.split()[1], T, threads, network))


def contenders() -> tuple[str, ...]:
    """CONTENDERS, less "pytorch" where torch is not installed."""
    from benchmarks.baselines import torch_available

    return CONTENDERS if torch_available() else CONTENDERS[:2]


def _faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_length(T, steps, repeats, threads, network="rate"):
    """Alternating rounds in this process -> {contender: {median, values, compile_s,
    faults_per_step}}."""
    runs, out, faults = {}, {}, {}
    for name in contenders():
        run = make(name, T, threads, network)
        t = time.perf_counter()
        run()
        runs[name], out[name] = run, {"first_call_s": time.perf_counter() - t, "values": [],
                                      "xla_temp_mib": getattr(run, "xla_temp_mib", None)}
        faults[name] = 0
    for _ in range(repeats):
        for name in runs:
            f, t = _faults(), time.perf_counter()
            for _ in range(steps):
                runs[name]()
            out[name]["values"].append(steps / (time.perf_counter() - t))
            faults[name] += _faults() - f
    for name in runs:
        out[name]["steps_per_s"] = statistics.median(out[name]["values"])
        out[name]["faults_per_step"] = faults[name] / (repeats * steps)
    return out


def peak_memory_child(name, T, threads, network="rate"):
    """In a fresh process: after one (compiling) step, the peak resident set size over three
    steps, sampled every 0.5 ms, minus the resident size before them (MiB)."""
    rss = lambda: int(Path("/proc/self/statm").read_text().split()[1]) * 4096  # noqa: E731
    run = make(name, T, threads, network)
    run()
    before = rss()
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(5e-4)

    sampler = threading.Thread(target=sample)
    sampler.start()
    for _ in range(3):
        run()
    done.set()
    sampler.join()
    print(json.dumps({"peak_mib": (peak[0] - before) / 2 ** 20}))


def peak_memory(name, T, threads, network="rate"):
    """Run `peak_memory_child` in a fresh process; large blocks are mmapped (and returned to
    the system when freed) so the peak of a step is not hidden by memory kept from the last."""
    cmd = [sys.executable, "-m", "benchmarks.rnn", "--memory-child", name, "--lengths", str(T),
           "--torch-threads", str(threads), "--network", network]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def markdown(result):
    m = result["machine"]
    what = (f"Rate network training step (H={HIDDEN}, batch {BATCH}, Dale's law, noise)"
            if result.get("network", "rate") == "rate" else
            f"Connectome network training step (279 neurons, batch {BATCH}, noise)")
    env = " ".join(f"{k}={v}" for k, v in result.get("malloc_env", {}).items()) or "glibc defaults"
    lines = [f"{what} — "
             f"{result['date']}; {m['cpu']}, {m['cores']} cores, load {m['load_before']} → "
             f"{m['load_after']}; torch threads {result['torch_threads']}; median of "
             f"{result['repeats']} alternating rounds of {result['steps']} steps; allocator: {env}.", "",
             "| T | " + " | ".join(f"{c} steps/s" for c in CONTENDERS) +
             " | manual ÷ pytorch | autodiff ÷ pytorch | load (1 min) | " +
             " | ".join(f"{c} peak MiB" for c in CONTENDERS) + " | XLA temp MiB manual / autodiff | "
             "page faults / step manual / pytorch |",
             "|---" * (2 * len(CONTENDERS) + 6) + "|"]
    for row in result["rows"]:
        sps = [row["timing"].get(c, {}).get("steps_per_s") for c in CONTENDERS]
        mem = [row.get("peak_mib", {}).get(c) for c in CONTENDERS]
        ratios = [f"{v / sps[2]:.2f}×" if sps[2] else "–" for v in sps[:2]]
        load = row.get("load") or [None, None]
        load_text = " → ".join("–" if v is None else f"{v[0]:.1f}" for v in load)
        lines.append(f"| {row['T']} | " + " | ".join("–" if v is None else f"{v:.1f}" for v in sps) +
                     f" | {ratios[0]} | {ratios[1]} | {load_text} | " +
                     " | ".join("–" if v is None else f"{v:.0f}" for v in mem) +
                     f" | {row['timing'][CONTENDERS[0]]['xla_temp_mib']:.1f} / "
                     f"{row['timing'][CONTENDERS[1]]['xla_temp_mib']:.1f} | " +
                     " / ".join("–" if c not in row["timing"] else f"{row['timing'][c]['faults_per_step']:.0f}"
                                for c in (CONTENDERS[0], CONTENDERS[2])) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(prog="benchmarks.rnn", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/bench_rnn")
    ap.add_argument("--lengths", default="50,100,200,500,1000")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--network", choices=("rate", "connectome"), default="rate")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--memory-child", choices=CONTENDERS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    try:
        lengths = [int(v) for v in args.lengths.split(",")]
    except ValueError:
        ap.error(f"--lengths must be comma-separated integers, got {args.lengths!r}")
    if not lengths or min(lengths) < 1 or args.steps < 1 or args.repeats < 1:
        ap.error("--lengths, --steps and --repeats must be positive")
    if args.memory_child:
        return peak_memory_child(args.memory_child, lengths[0], args.torch_threads, args.network)
    result = {"benchmark": f"{args.network}-rnn-train", "network": args.network, "date": now(),
              "versions": versions(),
              "malloc_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("MALLOC_")},
              "load_before": loadavg(),
              "torch_threads": args.torch_threads, "steps": args.steps, "repeats": args.repeats,
              "rows": []}
    for T in lengths:
        load = loadavg()
        row = {"T": T, "timing": time_length(T, args.steps, args.repeats, args.torch_threads, args.network),
               "load": [load, loadavg()]}
        if not args.no_memory:
            row["peak_mib"] = {c: peak_memory(c, T, args.torch_threads, args.network) for c in row["timing"]}
        result["rows"].append(row)
        print(T, {c: round(t["steps_per_s"], 2) for c, t in row["timing"].items()},
              row.get("peak_mib"), "load", row["load"], flush=True)
    result["machine"] = machine(result.pop("load_before"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "rnn" if args.network == "rate" else "connectome"
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{name}.md").write_text(markdown(result))
    print(markdown(result), flush=True)
    return result


if __name__ == "__main__":
    main()
