"""Train LeNet-5 on the real MNIST database, by autodiff or by the hand-written chain rule.

    python -m experiments.train_lenet                      # modern LeNet-5, defaults below
    python -m experiments.train_lenet --variant classic --grad manual --seed 1
    python -m experiments.train_lenet --out runs/x --resume  # continue an interrupted run

Writes to --out: metrics.csv (one row per epoch), summary.json, checkpoints/ (one per
epoch, atomic), plots/*.png. A resumed run continues bit for bit as if never stopped: the
data order of epoch e and each image's random shift (the only augmentation, --max-shift)
depend only on (seed, e), and params and optimiser state come back from the last complete
checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn
from jaxnn import data as jdata
from jaxnn.models import LENET5_ALL_VARIANTS, lenet5, lenet5_stages

METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "epoch_seconds",
                 "images_per_second")


@dataclasses.dataclass(frozen=True)
class Config:
    variant: str = "modern"
    grad: str = "autodiff"
    epochs: int = 12
    batch_size: int = 128
    optimizer: str = "adamw"
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    schedule: str = "cosine"
    max_shift: int = 2
    seed: int = 0
    dataset: str = "mnist"
    data_dir: str | None = None
    out: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    eval_batch_size: int = 1000
    plots: bool = True
    progress: bool = True
    resume: bool = False

    def out_dir(self) -> Path:
        return Path(self.out or f"runs/lenet5-{self.variant}-{self.grad}-seed{self.seed}")


def make_optimizer(config: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    """optax optimiser; "cosine" decays the learning rate to 0 over the whole run."""
    total = max(config.epochs * steps_per_epoch, 1)
    lr = (optax.cosine_decay_schedule(config.learning_rate, total) if config.schedule == "cosine"
          else config.learning_rate)
    makers = {"adam": optax.adam, "sgd": optax.sgd,
              "adamw": lambda lr: optax.adamw(lr, weight_decay=config.weight_decay),
              "momentum": lambda lr: optax.sgd(lr, momentum=0.9, nesterov=True)}
    if config.optimizer not in makers:
        raise ValueError(f"--optimizer must be one of {sorted(makers)}, got {config.optimizer!r}")
    if config.schedule not in ("cosine", "constant"):
        raise ValueError(f"--schedule must be 'cosine' or 'constant', got {config.schedule!r}")
    return makers[config.optimizer](lr)


def load_data(config: Config):
    """((x_train, y_train), (x_test, y_test)): float32 (N, 28, 28, 1) normalised, int32 labels."""
    def prep(split, subset):
        images, labels = jdata.load(config.dataset, split, data_dir=config.data_dir)
        if subset is not None:
            images, labels = images[:subset], labels[:subset]
        return jdata.add_channel_axis(jdata.normalize(images)), labels.astype(np.int32)
    return prep("train", config.train_subset), prep("test", config.test_subset)


def evaluate(eval_fn, params, images, labels, batch_size):
    """(mean loss, accuracy) over a whole set, in batches (the last one may be smaller)."""
    correct, total_loss = 0, 0.0
    for i in range(0, len(images), batch_size):
        m = eval_fn(params, images[i:i + batch_size], labels[i:i + batch_size])
        correct += int(m["correct"])
        total_loss += float(m["loss"])
    return total_loss / len(images), correct / len(images)


def _write_atomic(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(text)
    os.replace(f.name, path)


def _write_metrics(path: Path, rows: list[dict]) -> None:
    lines = [",".join(METRIC_FIELDS)]
    lines += [",".join(repr(r[k]) if isinstance(r[k], float) else str(r[k]) for k in METRIC_FIELDS)
              for r in rows]
    _write_atomic(path, "\n".join(lines) + "\n")


def _read_metrics(path: Path, upto_epoch: int) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        rows = [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items()}
                for r in csv.DictReader(f)]
    return [r for r in rows if r["epoch"] <= upto_epoch]


def _progress(total, desc, enabled):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is in the experiments extra; run without a bar if absent
        return None
    return tqdm(total=total, desc=desc, unit="step", leave=False, disable=not enabled,
                dynamic_ncols=True)


def train_and_evaluate(config: Config, data=None) -> dict:
    """Run the experiment; returns the summary (also written to summary.json).

    data: optional ((x_train, y_train), (x_test, y_test)) arrays, as `load_data` returns;
    read from the IDX files when omitted.
    """
    if config.variant not in LENET5_ALL_VARIANTS:
        raise ValueError(f"--variant must be one of {LENET5_ALL_VARIANTS}, got {config.variant!r}")
    jaxnn.backprop.check_method(config.grad)
    out = config.out_dir()
    out.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = data if data is not None else load_data(config)
    steps_per_epoch = len(x_train) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch size {config.batch_size} exceeds the {len(x_train)} training images")

    model = lenet5(config.variant)
    loss = jaxnn.losses.softmax_cross_entropy()
    optimizer = make_optimizer(config, steps_per_epoch)
    _, params = model.init(jax.random.key(config.seed), (-1, *x_train.shape[1:]))
    opt_state = optimizer.init(params)

    from jaxnn.checkpoint import Checkpoints
    ckpt = Checkpoints(out / "checkpoints")
    start_epoch, rows = 0, []
    if config.resume and ckpt.latest() is not None:
        start_epoch = ckpt.latest()
        state = ckpt.restore(start_epoch, {"params": params, "opt_state": opt_state})
        params, opt_state = state["params"], state["opt_state"]
        rows = _read_metrics(out / "metrics.csv", start_epoch)
        print(f"resumed from {ckpt.directory} at epoch {start_epoch}")
    elif ckpt.latest() is not None:
        raise FileExistsError(f"{out} already holds checkpoints; pass --resume to continue that "
                              f"run or choose another --out")
    _write_atomic(out / "config.json", json.dumps(dataclasses.asdict(config), indent=2) + "\n")

    step = jaxnn.train_step(model, loss, optimizer, config.grad)
    eval_fn = jaxnn.eval_step(model, loss)
    xb, yb = x_train[:config.batch_size], y_train[:config.batch_size]
    t0 = time.perf_counter()
    step = step.lower(params, opt_state, xb, yb).compile()
    compile_seconds = time.perf_counter() - t0
    print(f"compiled the {config.grad} train step in {compile_seconds:.2f} s")

    background = float(jdata.normalize(np.zeros(1, np.uint8))[0])
    for epoch in range(start_epoch + 1, config.epochs + 1):
        order = jdata.epoch_permutation(len(x_train), config.seed, epoch)
        shifts = jdata.epoch_shifts(len(x_train), config.seed, epoch, config.max_shift)
        bar = _progress(steps_per_epoch, f"epoch {epoch}/{config.epochs}", config.progress)
        t_epoch = time.perf_counter()
        losses = []
        for i in range(steps_per_epoch):
            batch = slice(i * config.batch_size, (i + 1) * config.batch_size)
            xb = x_train[order[batch]]
            if config.max_shift:
                xb = jdata.shift_images(xb, shifts[batch], background)
            params, opt_state, metrics = step(params, opt_state, xb, y_train[order[batch]])
            losses.append(metrics["loss"])
            if bar is not None and (i % 20 == 19 or i == steps_per_epoch - 1):
                done = (i + 1) * config.batch_size
                bar.set_postfix(loss=f"{float(losses[-1]):.4f}",
                                img_s=f"{done / (time.perf_counter() - t_epoch):.0f}")
                bar.update(i + 1 - bar.n)
        train_loss = float(jnp.mean(jnp.stack(losses)))
        epoch_seconds = time.perf_counter() - t_epoch
        if bar is not None:
            bar.close()
        _, train_acc = evaluate(eval_fn, params, x_train, y_train, config.eval_batch_size)
        test_loss, test_acc = evaluate(eval_fn, params, x_test, y_test, config.eval_batch_size)
        rows.append({"epoch": epoch, "train_loss": train_loss, "train_acc": train_acc,
                     "test_loss": test_loss, "test_acc": test_acc, "epoch_seconds": epoch_seconds,
                     "images_per_second": steps_per_epoch * config.batch_size / epoch_seconds})
        # Metrics first: after a crash between the two writes, resuming drops the rows past
        # the last checkpoint and recomputes them.
        _write_metrics(out / "metrics.csv", rows)
        ckpt.save(epoch, {"params": params, "opt_state": opt_state})
        print(f"epoch {epoch:3d}  loss {train_loss:.4f}  train {100 * train_acc:.2f}%  "
              f"test {100 * test_acc:.2f}%  {epoch_seconds:.1f} s "
              f"({rows[-1]['images_per_second']:.0f} img/s)", flush=True)
    ckpt.close()

    summary = {
        "config": dataclasses.asdict(config),
        "final": rows[-1] if rows else None,
        "best_test_acc": max((r["test_acc"] for r in rows), default=None),
        "compile_seconds": compile_seconds,
        "train_seconds": sum(r["epoch_seconds"] for r in rows),
        "num_params": int(sum(p.size for p in jax.tree.leaves(params))),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "cpus": os.cpu_count(), "jax": jax.__version__,
                    "device": str(jax.devices()[0])},
    }
    _write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    if config.plots and rows:
        _plot(config.variant, model, params, rows, x_test, y_test, eval_batch=config.eval_batch_size, out=out / "plots")
    return summary


def _plot(variant, model, params, rows, x_test, y_test, *, eval_batch, out: Path) -> None:
    from experiments import plots

    predict = jax.jit(model.apply)
    logits = np.concatenate([np.asarray(predict(params, x_test[i:i + eval_batch]))
                             for i in range(0, len(x_test), eval_batch)])
    preds = logits.argmax(-1)
    probs = np.asarray(jax.nn.softmax(jnp.asarray(logits), axis=-1)).max(-1)
    wrong = np.flatnonzero(preds != y_test)
    plots.plot_curves(rows, out / "curves.png")
    plots.plot_filters(np.asarray(params[0].w), out / "filters_conv1.png",
                       title="Learned conv1 5×5 filters (receptive fields)")
    plots.plot_activations(x_test[0, ..., 0], _activations(variant, params, x_test[:1]),
                           out / "activations.png")
    plots.plot_confusion(plots.confusion_matrix(y_test, preds), out / "confusion.png")
    plots.plot_misclassified(x_test[wrong, ..., 0], y_test[wrong], preds[wrong],
                             out / "misclassified.png", probs=probs[wrong])
    print(f"plots in {out}")


def _activations(variant, params, x):
    """(stage name, output for the one image in x) after each conv, pool and dense stage."""
    outs = []
    for (name, layer), p in zip(lenet5_stages(variant), params):
        x = layer.apply(p, x)
        if name.endswith("act") or name in ("S2", "S4", "output"):
            outs.append((name, np.asarray(x[0])))
    return outs


def parse_args(argv=None) -> Config:
    defaults = Config()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--variant", choices=LENET5_ALL_VARIANTS, default=defaults.variant)
    p.add_argument("--grad", choices=jaxnn.backprop.METHODS, default=defaults.grad,
                   help="how gradients are computed")
    p.add_argument("--epochs", type=int, default=defaults.epochs)
    p.add_argument("--batch-size", type=int, default=defaults.batch_size)
    p.add_argument("--optimizer", default=defaults.optimizer, help="adam, adamw, sgd, momentum")
    p.add_argument("--lr", dest="learning_rate", type=float, default=defaults.learning_rate)
    p.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                   help="decoupled weight decay (adamw only)")
    p.add_argument("--schedule", choices=("cosine", "constant"), default=defaults.schedule)
    p.add_argument("--max-shift", type=int, default=defaults.max_shift,
                   help="augment: translate each training image by up to this many pixels (0: off)")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--dataset", choices=sorted(jdata.DATASETS), default=defaults.dataset)
    p.add_argument("--data-dir", default=None, help="default: $JAXNN_DATA_DIR, then the cache")
    p.add_argument("--out", default=None, help="default: runs/lenet5-VARIANT-GRAD-seedSEED")
    p.add_argument("--train-subset", type=int, default=None, help="use the first N training images")
    p.add_argument("--test-subset", type=int, default=None)
    p.add_argument("--no-plots", dest="plots", action="store_false")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    return Config(**vars(p.parse_args(argv)))


def main(argv=None) -> int:
    config = parse_args(argv)
    summary = train_and_evaluate(config)
    final = summary["final"]
    if final is not None:
        print(f"final test accuracy {100 * final['test_acc']:.2f}% after {final['epoch']} epochs; "
              f"results in {config.out_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
