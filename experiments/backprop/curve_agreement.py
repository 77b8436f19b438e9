"""Do manual and autodiff training follow the same curve? Step by step, against a noise floor.

    python -m experiments.backprop.curve_agreement                  # modern and classic, 2 epochs each
    python -m experiments.backprop.curve_agreement --steps 300 --dtypes float32 float64

From one seed and one data order, trains LeNet-5 three ways and records the loss of every step:
  autodiff             the reference;
  manual               the hand-written chain rule;
  autodiff, perturbed  autodiff again from initial weights moved by one ulp (np.nextafter):
                       the noise floor — how far two runs drift apart from a rounding-sized
                       difference alone.
If manual stays as close to autodiff as the perturbed run does, the two gradients differ only
by rounding. Writes curves.json, curves.md and curves.png to --out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn
from experiments.common import cli, plots
from experiments.common.cli import UsageError
from experiments.common.loop import save_figure, write_atomic
from jaxnn import data as jdata
from jaxnn.models import LENET5_VARIANTS, lenet5

WINDOWS = (0, 100, 500)  # starts of the step windows gaps are reported over


def run(variant, method, steps, x, y, batch, seed, dtype, perturb=False) -> np.ndarray:
    """Per-step training loss (steps,) of one run, Adam 1e-3."""
    model = lenet5(variant)
    _, params, state = model.init(jax.random.key(seed), (-1, 28, 28, 1))
    params = jax.tree.map(lambda a: jnp.asarray(a, dtype), params)
    if perturb:
        params = jax.tree.map(lambda a: jnp.asarray(np.nextafter(np.asarray(a), np.inf)), params)
    init, step = jaxnn.train_step(model, jaxnn.losses.softmax_cross_entropy(), optax.adam(1e-3),
                                  method)
    ts = init(params, state)
    per_epoch = len(x) // batch
    losses = []
    for i in range(steps):
        epoch, j = divmod(i, per_epoch)
        idx = jdata.epoch_permutation(len(x), seed, epoch + 1)[j * batch:(j + 1) * batch]
        ts, metrics = step(ts, (x[idx].astype(dtype), y[idx]), jax.random.key(i))
        losses.append(metrics["loss"])
    return np.asarray(jnp.stack(losses), np.float64)


def windows(steps: int) -> list[tuple[int, int]]:
    """[(first, end)) step windows that hold at least one of `steps` steps."""
    starts = [w for w in WINDOWS if w < steps]
    return list(zip(starts, starts[1:] + [steps]))


def gaps(a: np.ndarray, b: np.ndarray) -> list[float]:
    """Max relative gap |a-b|/|a| within each window of steps."""
    rel = np.abs(a - b) / np.abs(a)
    return [float(rel[lo:hi].max()) for lo, hi in windows(len(a))]


def main(argv=None) -> int:
    p = cli.parser("python -m experiments.backprop.curve_agreement", __doc__)
    p.add_argument("--variants", nargs="+", choices=LENET5_VARIANTS, default=list(LENET5_VARIANTS))
    p.add_argument("--dtypes", nargs="+", choices=("float32", "float64"), default=["float32"])
    p.add_argument("--steps", type=cli.positive_int, default=936)
    p.add_argument("--batch-size", type=cli.positive_int, default=128)
    p.add_argument("--seed", type=cli.seed, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", type=Path, default=Path("runs/curve_agreement"))
    args = p.parse_args(argv)
    if args.batch_size > 60000:
        raise UsageError(f"--batch-size {args.batch_size} exceeds the 60000 training images")
    cli.claim_out(args.out)
    images, labels = jdata.load_mnist("train", data_dir=args.data_dir)
    x, y = jdata.add_channel_axis(jdata.normalize(images)), labels.astype(np.int32)

    results = []
    for dtype in args.dtypes:
        with jax.enable_x64(dtype == "float64"):
            for variant in args.variants:
                curves = {name: run(variant, method, args.steps, x, y, args.batch_size, args.seed,
                                    dtype, perturb)
                          for name, method, perturb in (("autodiff", "autodiff", False),
                                                        ("manual", "manual", False),
                                                        ("perturbed", "autodiff", True))}
                results.append({"variant": variant, "dtype": dtype,
                                 "manual_vs_autodiff": gaps(curves["autodiff"], curves["manual"]),
                                 "perturbed_vs_autodiff": gaps(curves["autodiff"], curves["perturbed"]),
                                 "curves": {k: v.tolist() for k, v in curves.items()}})
                print(f"{variant} {dtype}: manual {results[-1]['manual_vs_autodiff']}, "
                      f"noise floor {results[-1]['perturbed_vs_autodiff']}", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "curves.json", json.dumps(results) + "\n")
    names = [f"steps {lo}–{hi - 1}" for lo, hi in windows(args.steps)]
    lines = ["| variant | dtype | pair | " + " | ".join(names) + " |",
             "|---|---|---|" + "---|" * len(names)]
    for r in results:
        for pair in ("manual_vs_autodiff", "perturbed_vs_autodiff"):
            label = "manual vs autodiff" if pair.startswith("manual") else "autodiff 1-ulp init vs autodiff"
            lines.append(f"| {r['variant']} | {r['dtype']} | {label} | "
                         + " | ".join(f"{g:.1e}" for g in r[pair]) + " |")
    text = "Max relative gap in the per-step training loss.\n\n" + "\n".join(lines) + "\n"
    write_atomic(args.out / "curves.md", text)
    print(text)
    plots.plot_curve_agreement(results, args.out / "curves.png", seed=args.seed)
    return 0


def _plot(results, path):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6 * len(results), 4))
    FigureCanvasAgg(fig)
    for i, r in enumerate(results):
        ax = fig.add_subplot(1, len(results), i + 1)
        ref = np.asarray(r["curves"]["autodiff"])
        for name in ("manual", "perturbed"):
            gap = np.abs(np.asarray(r["curves"][name]) - ref) / np.abs(ref)
            ax.semilogy(np.maximum(gap, 1e-17), lw=0.8,
                        label="manual" if name == "manual" else "autodiff, 1-ulp init")
        ax.set(title=f"{r['variant']} ({r['dtype']})", xlabel="step",
               ylabel="|loss − loss_autodiff| / loss_autodiff")
        ax.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


if __name__ == "__main__":
    sys.exit(cli.cli_main(main))
