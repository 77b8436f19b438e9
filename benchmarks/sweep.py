"""Cost per image against the batch size: a LeNet-5 training step and evaluation step in jaxnn
(both methods, whole batch and at explicit chunk sizes), stax and PyTorch, side by side.

    python -m benchmarks.run --sweep-only                      # the sweep alone
    python -m benchmarks.run --sweep-only --batches 64,2048 --sweep-repeats 3

For every batch size N (default 16 … 2048) each contender is built, called once (compilation,
timed apart), then all contenders run in turn, `--sweep-repeats` times (A B C … A B C …), each
turn `ceil(--sweep-images / N)` calls on one fixed batch already on the device. Figures are
medians of wall µs per image, with CPU µs per image (`time.process_time`, all threads) and the
ratio to PyTorch's median at the same N: the faster of its two rows (`--torch-threads`, default
the core count, and one thread), since two threads collapse while another process holds a
core. The load average is read before and after each N.

Training: Adam 1e-3, softmax cross-entropy (mean over the batch). Evaluation: logits, argmax
hits and the summed loss, no gradients (`torch.no_grad` for PyTorch).
jaxnn rows: "whole" is `chunk=None` (the batch as given); "chunk m" cuts the batch into chunks of
at most m examples inside the one compiled step (`jaxnn.train.chunks`: for training the chunks
unrolled, for evaluation a `lax.map` over them). A batch no larger than m is one chunk, the same
program as "whole".
"""

from __future__ import annotations

import math
import os
import statistics
import time

BATCHES = (16, 32, 64, 128, 256, 512, 1024, 2048)
TRAIN = ("jaxnn autodiff whole", "jaxnn autodiff chunk 32", "jaxnn manual whole",
         "jaxnn manual chunk 32", "stax", "pytorch", "pytorch 1 thread")
EVAL = ("jaxnn whole", "jaxnn chunk 32", "jaxnn chunk 125", "jaxnn chunk 500", "stax", "pytorch",
        "pytorch 1 thread")


def _jaxnn(kind, name, x, y):
    import jax
    import optax

    import jaxnn
    from jaxnn import losses
    from jaxnn.models import LENET5_INPUT_SHAPE, lenet5

    # The convolution the experiments pick on this backend (CPUConv2D on XLA:CPU).
    conv = jaxnn.layers.CPUConv2D if jax.default_backend() == "cpu" else None
    model, loss = lenet5("modern", conv=conv), losses.softmax_cross_entropy()
    _, params, state = model.init(jax.random.key(0), LENET5_INPUT_SHAPE)
    chunk = None if name.endswith("whole") else int(name.rsplit(" ", 1)[1])
    if kind == "eval":
        evaluate = jaxnn.eval_step(model, loss, chunk=chunk)
        return lambda: evaluate(params, state, x, y)
    init, step = jaxnn.train_step(model, loss, optax.adam(1e-3), name.split()[1], chunk=chunk)
    box, key = [init(params, state)], jax.random.key(1)

    def call():
        box[0], metrics = step(box[0], (x, y), key)
        return metrics
    return call


def _stax(kind, x, y):
    import jax
    import jax.numpy as jnp
    import optax

    from benchmarks.baselines import stax_lenet5

    params, apply_fn = stax_lenet5()

    def loss_fn(p, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, xb), yb).mean()

    if kind == "eval":
        @jax.jit
        def evaluate(p, xb, yb):
            logits = apply_fn(p, xb)
            return {"correct": (jnp.argmax(logits, -1) == yb).sum(),
                    "loss": optax.softmax_cross_entropy_with_integer_labels(logits, yb).sum()}
        return lambda: evaluate(params, x, y)
    opt = optax.adam(1e-3)

    @jax.jit
    def train(p, s, xb, yb):
        value, grads = jax.value_and_grad(loss_fn)(p, xb, yb)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value

    state = [params, opt.init(params)]

    def call():
        state[0], state[1], value = train(state[0], state[1], x, y)
        return value
    return call


def _torch(kind, x, y, threads):
    import numpy as np
    import torch

    from benchmarks.baselines import LEARNING_RATE, torch_lenet5

    net = torch_lenet5()
    xt = torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))
    yt = torch.from_numpy(np.asarray(y).astype(np.int64))
    criterion = torch.nn.CrossEntropyLoss()
    if kind == "eval":
        def evaluate():
            torch.set_num_threads(threads)  # the torch rows alternate with different counts
            with torch.no_grad():
                logits = net(xt)
                return (logits.argmax(-1) == yt).sum(), criterion(logits, yt) * len(yt)
        return evaluate
    optimizer = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE)

    def train():
        torch.set_num_threads(threads)
        optimizer.zero_grad(set_to_none=True)
        value = criterion(net(xt), yt)
        value.backward()
        optimizer.step()
        return value
    return train


def _build(kind, name, x, y, torch_threads):
    if name == "stax":
        return _stax(kind, x, y)
    if name.startswith("pytorch"):
        return _torch(kind, x, y, 1 if name == "pytorch 1 thread" else torch_threads)
    return _jaxnn(kind, name, x, y)


def sweep(images, labels, batches=BATCHES, repeats=5, images_per_turn=2048, torch_threads=2,
          contenders=None, log=print) -> dict:
    """Per kind ("train", "eval"), per batch size: rows of µs/image (see the module docstring).

    images (M, 28, 28, 1) float32 and labels (M,) int32 numpy, M ≥ max(batches).
    """
    import jax

    from benchmarks.baselines import torch_available

    have_torch = torch_available()
    result = {"batches": list(batches), "repeats": repeats, "images_per_turn": images_per_turn,
              "torch_threads": torch_threads if have_torch else None, "train": [], "eval": []}
    for n in batches:
        x, y = jax.device_put(images[:n]), jax.device_put(labels[:n])
        calls = math.ceil(images_per_turn / n)
        load_before = os.getloadavg()
        built = {}
        for kind, names in (("train", TRAIN), ("eval", EVAL)):
            for name in names:
                if (contenders and name not in contenders) or (name.startswith("pytorch")
                                                               and not have_torch):
                    continue
                if name == "pytorch 1 thread" and torch_threads == 1:
                    continue  # the "pytorch" row is already the one-thread row
                on_host = name.startswith("pytorch")
                fn = _build(kind, name, images[:n] if on_host else x, labels[:n] if on_host else y,
                            torch_threads)
                t = time.perf_counter()
                jax.block_until_ready(fn())
                built[kind, name] = (fn, time.perf_counter() - t)
        wall = {k: [] for k in built}
        cpu = {k: [] for k in built}
        for _ in range(repeats):
            for key, (fn, _) in built.items():
                t, c = time.perf_counter(), time.process_time()
                for _ in range(calls):
                    out = fn()
                jax.block_until_ready(out)
                wall[key].append((time.perf_counter() - t) / (calls * n) * 1e6)
                cpu[key].append((time.process_time() - c) / (calls * n) * 1e6)
        load_after = os.getloadavg()
        for kind in ("train", "eval"):
            # The faster PyTorch row at this size is the baseline (two threads collapse when
            # another process holds a core; one thread loses on a quiet machine).
            torch_rows = [statistics.median(wall[kind, t]) for t in ("pytorch", "pytorch 1 thread")
                          if (kind, t) in wall]
            torch_median = min(torch_rows) if torch_rows else None
            for (k, name), (_, first) in built.items():
                if k != kind:
                    continue
                med = statistics.median(wall[k, name])
                result[kind].append({
                    "batch": n, "name": name, "us_per_image": med, "min": min(wall[k, name]),
                    "max": max(wall[k, name]), "cpu_us_per_image": statistics.median(cpu[k, name]),
                    "x_pytorch": med / torch_median if torch_median else None,
                    "first_call_s": first, "load_before": list(load_before), "load_after": list(load_after)})
        log(f"  batch {n}: done (load {load_before[0]:.1f} -> {load_after[0]:.1f})")
    return result


def markdown(result: dict) -> str:
    """Two tables (training, evaluation): a row per batch size, a column per contender, each cell
    'median µs/image (× best PyTorch)'."""
    lines = []
    for kind, title in (("train", "Training step"), ("eval", "Evaluation step")):
        rows = result[kind]
        names = list(dict.fromkeys(r["name"] for r in rows))
        lines += ["", f"{title}: median µs per image (× the faster PyTorch row at the same batch size); "
                  "load average before → after", "",
                  "| batch | " + " | ".join(names) + " | load |",
                  "|---|" + "---|" * (len(names) + 1)]
        for n in result["batches"]:
            at = {r["name"]: r for r in rows if r["batch"] == n}
            if not at:
                continue
            cells = []
            for name in names:
                r = at.get(name)
                ratio = f" ({r['x_pytorch']:.2f}×)" if r and r["x_pytorch"] is not None else ""
                cells.append(f"{r['us_per_image']:.1f}{ratio}" if r else "–")
            any_row = next(iter(at.values()))
            load = f"{any_row['load_before'][0]:.1f} → {any_row['load_after'][0]:.1f}"
            lines.append(f"| {n} | " + " | ".join(cells) + f" | {load} |")
    return "\n".join(lines).lstrip("\n") + "\n"


def plot(result: dict, path) -> None:
    """µs per image against the batch size (log-log), training and evaluation side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (kind, title) in zip(axes, (("train", "training step"), ("eval", "evaluation"))):
        rows = result[kind]
        for name in dict.fromkeys(r["name"] for r in rows):
            pts = [(r["batch"], r["us_per_image"]) for r in rows if r["name"] == name]
            ax.plot(*zip(*pts), marker="o", label=name)
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="µs per image (median)",
               title=f"LeNet-5 {title}")
        ax.set_xticks(result["batches"], [str(b) for b in result["batches"]])
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


__all__ = ["BATCHES", "EVAL", "TRAIN", "markdown", "plot", "sweep"]
