"""Credit assignment without weight transport: LeNet-5 trained by backprop, feedback alignment (FA),
direct feedback alignment (DFA) and sign symmetry (uSF, brSF, frSF), beside BioTorch's table.

    python -m experiments.credit.credit_assignment --out runs/credit            # everything
    python -m experiments.credit.credit_assignment --out /tmp/c --quick         # minutes
    python -m experiments.credit.credit_assignment --out runs/credit --datasets mnist \\
        --methods backprop fa --seeds 0 1 2 --epochs 12
    python -m experiments.credit.credit_assignment --out runs/credit --tune    # LR sweep first
    python -m experiments.credit.credit_assignment --out runs/c1 --methods fa --freeze C1

Every method × dataset × seed is one run of the shared loop (experiments/common/loop.py) in
--out/<dataset>/<method>-seed<seed>/ (metrics.csv, checkpoints, summary.json). A finished run is
not repeated and an interrupted one resumes from its newest checkpoint, so the command can be
re-run after a crash. The model, data, augmentation and optimiser are experiments.train_lenet's
(modern LeNet-5, AdamW 2e-3 with cosine decay, weight decay 0.05, batch 128, random shifts of up
to 2 pixels, 12 epochs); the step is `jaxnn.make_step(model, jaxnn.credit.rule(loss, method),
optimizer)`. The last --holdout (5000) training images are a validation split, never trained
on: the validation error is recorded every epoch, and the optional --tune sweep (learning rate,
per method, on the validation error of seed 0 after --tune-epochs) reads only it. The test set
is only measured. Per epoch, each run also records the angle between its weight update and
backprop's gradient, per weight layer, on a fixed training batch (Lillicrap et al.'s alignment).

Writes to --out: summary.json (test error mean ± spread per method × dataset beside BioTorch's
published row, the angles per layer over training, what was tuned and on what), table.md and
figures/ (learning curves per dataset, alignment angles per dataset); prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import optax

import jaxnn
from experiments import train_lenet
from experiments.common import cli
from experiments.common.loop import (
    ArgumentParser,
    LoopConfig,
    UsageError,
    cli_main,
    read_metrics,
    run,
    write_atomic,
)
from jaxnn import credit
from jaxnn import data as jdata
from jaxnn.models import LENET5_INPUT_SHAPE, lenet5_stages

DATASETS = ("mnist", "fashion-mnist")
# BioTorch README, LeNet top-1 test error (%): (MNIST, Fashion-MNIST)
BIOTORCH = {"backprop": (0.84, 8.88), "fa": (1.91, 12.77), "dfa": (1.71, 12.76),
            "usf": (0.83, 9.22), "brsf": (0.79, 9.31), "frsf": (0.92, 9.27)}
LABELS = {"backprop": "backprop", "fa": "FA", "dfa": "DFA", "usf": "uSF", "brsf": "brSF",
          "frsf": "frSF"}
FEEDBACK_KEY = 0xFB  # the feedback of seed s is drawn from fold_in(key(s), FEEDBACK_KEY)
ALIGNMENT_IMAGES = 128  # the fixed batch the angles are measured on (the first training batch)
FREEZABLE = ("C1", "C3", "C5", "F6", "output")  # the weight layers of both variants
QUICK = {"epochs": 2, "train_subset": 12000, "test_subset": 2000, "holdout": 2000}


@dataclasses.dataclass(frozen=True)
class Settings:
    out: str
    datasets: tuple = DATASETS
    methods: tuple = credit.METHODS
    seeds: tuple = (0, 1, 2)
    epochs: int = 12
    holdout: int = 5000
    variant: str = "modern"
    output_scale: float = 0.1
    max_shift: int = 2
    weight_decay: float = 0.05
    freeze: tuple = ()                # weight layers kept at their initial values ("C1", ...)
    train_subset: int | None = None
    test_subset: int | None = None
    learning_rates: tuple = ()        # per-method overrides "fa=1e-3"
    tune: bool = False
    tune_grid: tuple = (5e-4, 1e-3, 2e-3, 4e-3)
    tune_epochs: int = 3
    tune_methods: tuple = ("fa", "dfa")
    data_dir: str | None = None
    chunk: int | None | str = train_lenet.BACKEND
    progress: bool = False
    quick: bool = False


def resolve_data_dir(data_dir: str | None) -> str | None:
    """The directory holding mnist/ and fashion-mnist/: --data-dir, else $JAXNN_DATA_DIR, whose
    parent is taken when it names one dataset's own folder (…/mnist), so that the other dataset
    is not looked for among MNIST's files."""
    d = data_dir or os.environ.get("JAXNN_DATA_DIR")
    if d and Path(d).name in jdata.DATASETS:
        return str(Path(d).parent)
    return d


def lenet_config(s: Settings, dataset: str, method: str, seed: int, *, lr: float, epochs: int,
                 out: Path, optimizer: str | None = None) -> train_lenet.Config:
    optimizer = optimizer or train_lenet.Config().optimizer
    return train_lenet.Config(grad="manual", epochs=epochs, learning_rate=lr, seed=seed,
                              optimizer=optimizer, variant=s.variant,
                              max_shift=s.max_shift, weight_decay=s.weight_decay,
                              dataset=dataset, data_dir=resolve_data_dir(s.data_dir), out=str(out),
                              chunk=s.chunk, progress=s.progress, plots=False,
                              train_subset=s.train_subset, test_subset=s.test_subset)


def load(s: Settings, dataset: str):
    """(train, validation, test) arrays: the last s.holdout training images are the validation
    split."""
    config = lenet_config(s, dataset, "backprop", 0, lr=1e-3, epochs=1, out=Path(s.out))
    (x, y), test = train_lenet.load_data(config)
    if s.holdout >= len(x):
        raise UsageError(f"--holdout {s.holdout} leaves no training images of {len(x)}")
    return (x[:-s.holdout], y[:-s.holdout]), (x[-s.holdout:], y[-s.holdout:]), test


class Run(NamedTuple):
    """What one run is built from: its resolved config, model, loss, credit rule, step, the
    initialiser of (params, model_state) and the names of its weight layers."""
    config: Any
    model: Any
    loss: Any
    rule: Any
    train: Any
    init_model: Any
    weight_names: list


def build(s: Settings, dataset: str, method: str, seed: int, lr: float, epochs: int, out: Path,
          n_train: int, optimizer: str | None = None) -> Run:
    """The pieces of one run (the same for training it and for measuring it afterwards)."""
    config = lenet_config(s, dataset, method, seed, lr=lr, epochs=epochs, out=out,
                          optimizer=optimizer).resolved()
    model = train_lenet.build_model(config)
    loss = jaxnn.losses.softmax_cross_entropy()
    steps = n_train // config.batch_size
    rule = credit.rule(loss, method, key=jax.random.fold_in(jax.random.key(seed), FEEDBACK_KEY),
                       model=model, input_shape=LENET5_INPUT_SHAPE,
                       chunk=config.chunk if isinstance(config.chunk, int) else None)
    names = [n for n, _ in lenet5_stages(config.variant)]
    optimizer = train_lenet.make_optimizer(config, steps)
    if s.freeze:  # the frozen layers' updates (weight decay included) set to zero
        optimizer = optax.chain(optimizer, optax.masked(optax.set_to_zero(),
                                                        tuple(n in s.freeze for n in names)))
    train = jaxnn.make_step(model, rule, optimizer)

    @jax.jit
    def init_model():
        _, params, model_state = model.init(jax.random.key(seed), LENET5_INPUT_SHAPE)
        return scale_output(params, s.output_scale), model_state

    weight_names = [names[int(p.strip("[]"))] for p, _ in credit.weight_layers(
        jax.eval_shape(init_model)[0])]
    return Run(config, model, loss, rule, train, init_model, weight_names)


def probe_key(seed: int) -> jax.Array:
    """The key of the alignment measurement of seed `seed` (Dropout-free models ignore it)."""
    return jax.random.key(10_000 + seed)


def train_one(s: Settings, dataset: str, method: str, seed: int, lr: float, epochs: int,
              data, out: Path, *, evaluate_test: bool = True, optimizer: str | None = None) -> list[dict]:
    """One run on the shared loop; returns its metrics rows (one per epoch)."""
    train_set, val_set, test_set = data
    given = lenet_config(s, dataset, method, seed, lr=lr, epochs=epochs, out=out, optimizer=optimizer)
    config, model, loss, rule, train, init_model, weight_names = build(
        s, dataset, method, seed, lr, epochs, out, len(train_set[0]), optimizer)
    eval_fn = jaxnn.eval_step(model, loss, chunk=given.eval_chunk())
    probe = (train_set[0][:ALIGNMENT_IMAGES], train_set[1][:ALIGNMENT_IMAGES])

    @jax.jit
    def alignment(state, probe):  # the probe an argument, not a constant folded into the program
        return credit.alignment(model, loss, rule, state.params, state.model_state, probe,
                                state.rule_state, probe_key(seed))

    def evaluate(state, epoch):
        out = {"val_error": 1 - train_lenet.evaluate_in_batches(
            eval_fn, state, val_set[0], val_set[1], config.eval_batch_size)[1]}
        if evaluate_test:
            test_loss, test_acc = train_lenet.evaluate_in_batches(
                eval_fn, state, test_set[0], test_set[1], config.eval_batch_size)
            out.update(test_error=1 - test_acc, test_loss=test_loss)
        out.update({f"angle:{n}": float(a) for n, a in zip(weight_names, alignment(state, probe))})
        return out

    resume = (out / "checkpoints").exists() and any((out / "checkpoints").iterdir())
    loop = LoopConfig(out=str(out), epochs=epochs, seed=seed, resume=resume, progress=s.progress,
                      plots=False)
    cfg = {**dataclasses.asdict(config), "method": method, "holdout": s.holdout,
           "feedback_key": f"fold_in(key({seed}), {FEEDBACK_KEY})", "frozen": list(s.freeze)}
    run(loop, init=lambda: train.init(*init_model()), step=train.step,
        batches=lambda e: train_lenet.EpochBatches(config, train_set[0], train_set[1], e),
        evaluate=evaluate, config_dict=cfg, name=f"{dataset} {method} seed {seed}")
    return read_metrics(out / "metrics.csv")


def scale_output(params, scale: float):
    """params with the last weight layer's initial w multiplied by `scale` (the output layer)."""
    ws = [node.w for _, node in credit.weight_layers(params)]
    return credit.replace_weights(params, ws[:-1] + [ws[-1] * scale])


def finished(out: Path, epochs: int) -> bool:
    rows = read_metrics(out / "metrics.csv")
    return (out / "summary.json").exists() and bool(rows) and rows[-1]["epoch"] >= epochs


def tune(s: Settings, dataset: str, data, base_lr: float) -> dict:
    """Learning rate per method in s.tune_methods: the grid value with the lowest validation
    error of seed 0 after s.tune_epochs epochs (the test set is not evaluated)."""
    chosen = {}
    for method in s.tune_methods:
        scores = {}
        for lr in s.tune_grid:
            out = Path(s.out) / "tune" / dataset / f"{method}-lr{lr:g}"
            rows = (read_metrics(out / "metrics.csv") if finished(out, s.tune_epochs) else
                    train_one(s, dataset, method, 0, lr, s.tune_epochs, data, out, evaluate_test=False))
            scores[lr] = rows[-1]["val_error"]
        best = min(scores, key=lambda lr: (scores[lr], abs(np.log(lr / base_lr))))
        chosen[method] = {"learning_rate": best, "val_error": {f"{k:g}": v for k, v in scores.items()}}
        print(f"tune {dataset} {method}: validation error {scores} -> lr {best:g}", flush=True)
    return chosen


def parse_lrs(items) -> dict:
    out = {}
    for item in items:
        method, _, value = item.partition("=")
        if method not in credit.METHODS or not value:
            raise UsageError(f"--lr-for expects METHOD=LR with METHOD one of {credit.METHODS}, got {item!r}")
        out[method] = float(value)
    return out


def spread(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def run_all(s: Settings) -> dict:
    base_lr = train_lenet.Config().learning_rate
    fixed = parse_lrs(s.learning_rates)
    summary = {"settings": {k: v for k, v in dataclasses.asdict(s).items()},
               "protocol": {
                   "model": f"{s.variant} LeNet-5 (jaxnn.models.lenet5), settings of experiments.train_lenet, "
                            f"the output layer's initial weights x {s.output_scale} (every method)",
                   "validation": f"the last {s.holdout} images of the training set, never trained on",
                   "test": "measured only; nothing is chosen on it",
                   "output_scale": f"the output layer's initial weights x {s.output_scale}; 0.1 (the "
                                   "default) was chosen on the validation error of short runs (12000-image "
                                   "subset, 3 epochs): with train_lenet's init FA and DFA diverged on the "
                                   "modern LeNet-5 (test error 63-90%)",
                   "tuned": ("learning rate of " + ", ".join(s.tune_methods) + f" over {list(s.tune_grid)} "
                             f"on the validation error of seed 0 after {s.tune_epochs} epochs, per dataset")
                            if s.tune else "nothing: every method uses train_lenet's settings"
                            + (f" except the learning rates given {fixed}" if fixed else ""),
                   "frozen": list(s.freeze) or "nothing",
                   "feedback_init": "He-normal of each weight's shape (fa; |.| for frsf/brsf magnitudes); "
                                    "DFA: He-normal of the (10, D_k) matrix; uSF magnitude mean|W| per layer",
                   "alignment": "angle between the method's update and backprop's gradient of each weight "
                                f"layer's w, flattened, on the first {ALIGNMENT_IMAGES} training images (one batch), "
                                "after each epoch"},
               "biotorch": {m: {"mnist": v[0], "fashion-mnist": v[1]} for m, v in BIOTORCH.items()},
               "results": {}, "tuning": {}}
    for dataset in s.datasets:
        data = load(s, dataset)
        lrs = {m: fixed.get(m, base_lr) for m in s.methods}
        if s.tune:
            summary["tuning"][dataset] = tune(s, dataset, data, base_lr)
            lrs.update({m: v["learning_rate"] for m, v in summary["tuning"][dataset].items()
                        if m in lrs and m not in fixed})
        results = summary["results"].setdefault(dataset, {})
        for method in s.methods:
            per_seed = {}
            for seed in s.seeds:
                out = Path(s.out) / dataset / f"{method}-seed{seed}"
                if finished(out, s.epochs):
                    rows = read_metrics(out / "metrics.csv")
                else:
                    print(f"== {dataset} {method} seed {seed} (lr {lrs[method]:g}) -> {out}", flush=True)
                    rows = train_one(s, dataset, method, seed, lrs[method], s.epochs, data, out)
                per_seed[seed] = rows
            results[method] = summarise_method(per_seed, lrs[method], dataset, method)
        write_atomic(Path(s.out) / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def summarise_method(per_seed: dict, lr: float, dataset: str, method: str) -> dict:
    finals = {seed: 100 * rows[-1]["test_error"] for seed, rows in per_seed.items()}
    angle_keys = [k for k in per_seed[next(iter(per_seed))][-1] if k.startswith("angle:")]
    epochs = [r["epoch"] for r in per_seed[next(iter(per_seed))]]
    curves = {key: [100 * statistics.mean(rows[i][key] for rows in per_seed.values())
                    for i in range(len(epochs))] for key in ("test_error", "val_error")}
    angles = {k.split(":", 1)[1]: [statistics.mean(rows[i][k] for rows in per_seed.values())
                                   for i in range(len(epochs))] for k in angle_keys}
    col = DATASETS.index(dataset) if dataset in DATASETS else None
    return {"learning_rate": lr, "test_error_percent": {str(k): v for k, v in finals.items()},
            **{f"test_error_{k}": v for k, v in spread(list(finals.values())).items()},
            "val_error_final_mean": curves["val_error"][-1],
            "biotorch_test_error": BIOTORCH[method][col] if col is not None else None,
            "epochs": epochs, "curves_mean_percent": curves, "angle_degrees_mean_over_seeds": angles,
            "train_loss_final_mean": statistics.mean(rows[-1]["train_loss"] for rows in per_seed.values())}


def table(summary: dict) -> str:
    datasets = list(summary["results"])
    head = "| method | " + " | ".join(f"{d} test error (mean ± std, %) | BioTorch {d} (%)" for d in datasets) + " |"
    lines = [head, "|---|" + "---|---|" * len(datasets)]
    methods = list(dict.fromkeys(m for d in datasets for m in summary["results"][d]))
    for m in methods:
        cells = []
        for d in datasets:
            r = summary["results"][d].get(m)
            if r is None:
                cells += ["–", "–"]
                continue
            cells += [f"{r['test_error_mean']:.2f} ± {r['test_error_std']:.2f} (n={r['test_error_n']})",
                      "–" if r["biotorch_test_error"] is None else f"{r['biotorch_test_error']:.2f}"]
        lines.append(f"| {LABELS.get(m, m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv=None) -> Settings:
    p = ArgumentParser(description=__doc__.split("\n\n")[0],
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True)
    p.add_argument("--quick", action="store_true",
                   help=f"a minutes-long subset: {QUICK} (and one seed unless --seeds is given)")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    p.add_argument("--methods", nargs="+", default=list(credit.METHODS), choices=credit.METHODS)
    p.add_argument("--seeds", nargs="+", type=cli.seed, default=None, help="default 0 1 2 (0 with --quick)")
    p.add_argument("--epochs", type=cli.positive_int, default=None, help="default 12 (train_lenet's; 2 with --quick)")
    p.add_argument("--holdout", type=cli.positive_int, default=None,
                   help="training images held out as the validation split (default 5000)")
    p.add_argument("--train-subset", type=cli.positive_int, default=None, help="use the first N training images")
    p.add_argument("--test-subset", type=cli.positive_int, default=None)
    p.add_argument("--lr-for", nargs="*", default=[], metavar="METHOD=LR",
                   help="a learning rate for one method (default: train_lenet's 2e-3 for all)")
    p.add_argument("--tune", action="store_true", help="sweep the learning rate of --tune-methods on "
                   "the validation split first (seed 0, --tune-epochs epochs, per dataset)")
    p.add_argument("--tune-methods", nargs="+", default=["fa", "dfa"], choices=credit.METHODS)
    p.add_argument("--tune-grid", nargs="+", type=cli.positive_float, default=[5e-4, 1e-3, 2e-3, 4e-3])
    p.add_argument("--tune-epochs", type=cli.positive_int, default=3)
    p.add_argument("--variant", default="modern", choices=("modern", "classic"),
                   help="LeNet-5 variant (jaxnn.models.lenet5): ReLU + max pool, or tanh + average pool")
    p.add_argument("--output-scale", type=cli.nonnegative_float, default=0.1,
                   help="the output layer's initial weights times this, for every method (1: "
                        "train_lenet's init); feedback alignment needs a small initial readout")
    p.add_argument("--max-shift", type=cli.nonnegative_int, default=2,
                   help="augment: translate each training image by up to this many pixels (0: off)")
    p.add_argument("--weight-decay", type=cli.nonnegative_float, default=0.05,
                   help="AdamW's decoupled weight decay (train_lenet's default)")
    p.add_argument("--freeze", nargs="+", default=[], choices=FREEZABLE, metavar="LAYER",
                   help=f"keep these weight layers at their initial values ({', '.join(FREEZABLE)}): "
                        "does a layer's learning matter under a method?")
    p.add_argument("--data-dir", default=None, help="folder holding mnist/ and fashion-mnist/ "
                   "(default: $JAXNN_DATA_DIR, or its parent when it names one dataset)")
    p.add_argument("--chunk", type=train_lenet._chunk_arg, default=train_lenet.BACKEND,
                   help="examples per chunk of a step (train_lenet's default for the backend)")
    p.add_argument("--progress", action="store_true")
    a = p.parse_args(argv)
    q = a.quick
    s = Settings(out=a.out, datasets=tuple(dict.fromkeys(a.datasets)),
                 methods=tuple(dict.fromkeys(a.methods)),
                 seeds=tuple(a.seeds if a.seeds is not None else ((0,) if q else (0, 1, 2))),
                 epochs=a.epochs or (QUICK["epochs"] if q else 12),
                 holdout=a.holdout if a.holdout is not None else (QUICK["holdout"] if q else 5000),
                 train_subset=a.train_subset or (QUICK["train_subset"] if q else None),
                 test_subset=a.test_subset or (QUICK["test_subset"] if q else None),
                 learning_rates=tuple(a.lr_for), tune=a.tune, tune_grid=tuple(a.tune_grid),
                 tune_epochs=a.tune_epochs, tune_methods=tuple(a.tune_methods), data_dir=a.data_dir,
                 chunk=a.chunk, progress=a.progress, quick=q, variant=a.variant,
                 output_scale=a.output_scale, max_shift=a.max_shift, weight_decay=a.weight_decay,
                 freeze=tuple(dict.fromkeys(a.freeze)))
    parse_lrs(s.learning_rates)
    return s


def main(argv=None) -> int:
    s = parse_args(argv)
    summary = run_all(s)
    text = table(summary)
    write_atomic(Path(s.out) / "table.md", text + "\n")
    from experiments.credit import credit_plots
    figures = credit_plots.plot_all(summary, Path(s.out) / "figures")
    print(text)
    for dataset, results in summary["results"].items():
        for method, r in results.items():
            last = {k: round(v[-1], 1) for k, v in r["angle_degrees_mean_over_seeds"].items()}
            print(f"{dataset} {LABELS[method]}: final angle to backprop (deg) {last}")
    print(f"summary in {Path(s.out) / 'summary.json'}; figures: {', '.join(str(f) for f in figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
