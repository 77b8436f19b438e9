"""Rosenblatt's perceptron, from a separable toy to real MNIST, beside gradient descent.

    python -m experiments.rules.perceptron --out runs/perceptron
    python -m experiments.rules.perceptron --out runs/p-small --epochs 2 --train-subset 6000 --no-sklearn

1. A separable 2-D set: mistakes until convergence against Novikoff's bound (R/γ)², and the
   decision boundary after each mistake (separable_strip.png, separable_mistakes.png).
2. XOR: the rule never reaches zero errors, its weights cycle; a two-layer jaxnn net trained
   by backprop solves it (xor.png).
3. Real MNIST, ten one-vs-rest perceptrons (pixels / 255), plain and averaged, through the
   shared loop; beside them gradient descent (optax SGD, `jax.grad`) on the perceptron
   criterion and on the hinge loss, same data order, same epochs (mnist-*/, mnist_runs.png).
4. Side by side in this process: the averaged rule against scikit-learn's `Perceptron` and
   averaged `SGDClassifier(loss="perceptron")` (the optional `bench` extra), same epochs.
Everything lands in --out, with the numbers in --out/summary.json.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn as nn
from experiments.common import cli
from experiments.common.loop import LoopConfig, UsageError, cli_main, read_metrics, run
from experiments.rules import perceptron_plots as plots
from experiments.rules.rules_common import (
    check_positive,
    epoch_batches,
    epoch_order,
    flat_mnist,
    write_summary,
)
from jaxnn import losses
from jaxnn.layers.dense import DenseParams
from jaxnn.neuro import rules


@dataclasses.dataclass(frozen=True)
class Config:
    out: str = "runs/perceptron"
    epochs: int = 15
    chunk: int = 2000  # samples per step of the online rule: one lax.scan
    gd_batch: int = 100
    gd_lr: float = 1.0
    seed: int = 0
    data_dir: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    sklearn: bool = True
    resume: bool = False
    plots: bool = True
    progress: bool = True

    def validate(self) -> Config:
        check_positive(epochs=self.epochs, chunk=self.chunk, gd_batch=self.gd_batch,
                       gd_lr=self.gd_lr, train_subset=self.train_subset, test_subset=self.test_subset)
        for name in ("epochs", "chunk", "gd_batch"):
            if not isinstance(getattr(self, name), int):
                raise UsageError(f"--{name.replace('_', '-')} must be an integer")
        if self.train_subset is not None and self.train_subset < max(self.chunk, self.gd_batch):
            raise UsageError(f"--train-subset {self.train_subset} is smaller than a batch "
                             f"(--chunk {self.chunk}, --gd-batch {self.gd_batch})")
        return self


# ------------------------------------------------------------------------ 1. separable
def separable(cfg: Config, out) -> dict:
    rng = np.random.default_rng(cfg.seed)
    u, c, gap = np.array([0.8, -0.6]), 0.15, 0.05  # the true line u·x + c = 0, a gap each side
    x = rng.uniform(-1, 1, (1000, 2))
    x = x[np.abs(x @ u + c) >= gap][:200].astype(np.float32)
    labels = (x @ u + c > 0).astype(np.int32)
    radius, gamma = rules.novikoff_bound(jnp.asarray(x), jnp.asarray(labels), jnp.asarray(u, jnp.float32), c)
    d = labels[:, None].astype(np.float32)
    one = jax.jit(rules.perceptron_epoch)
    p = DenseParams(jnp.zeros((2, 1)), jnp.zeros((1,)))
    per_epoch, snaps = [], []
    for _ in range(1000):
        wrong = 0
        for i in range(len(x)):
            p, m = one(p, x[i:i + 1], d[i:i + 1], 1.0)
            if int(m[0]):
                wrong += 1
                snaps.append({"mistake": sum(per_epoch) + wrong, "w": np.asarray(p.w[:, 0]),
                              "b": float(p.b[0]), "point": x[i]})
        per_epoch.append(wrong)
        if wrong == 0:
            break
    total, bound = sum(per_epoch), (radius / gamma) ** 2
    if cfg.plots:
        pick = sorted({int(round(t)) for t in np.geomspace(1, len(snaps), min(6, len(snaps)))})
        strip = [snaps[i - 1] for i in pick] + [{**snaps[-1], "mistake": 0, "point": None}]
        plots.plot_boundary_strip(x, labels, strip, (u, c), out / "separable_strip.png", seed=cfg.seed)
        plots.plot_mistakes(per_epoch, bound, out / "separable_mistakes.png", seed=cfg.seed)
    return {"points": len(x), "R": radius, "gamma": gamma, "novikoff_bound": bound,
            "mistakes": total, "epochs_to_converge": len(per_epoch), "within_bound": total <= bound}


# ------------------------------------------------------------------------------ 2. XOR
def xor(cfg: Config, out) -> dict:
    x = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    labels = jnp.array([0, 1, 1, 0], jnp.int32)
    d = labels[:, None].astype(jnp.float32)
    p, errors, weights = DenseParams(jnp.zeros((2, 1)), jnp.zeros((1,))), [], []
    one = jax.jit(rules.perceptron_epoch)
    for _ in range(12):  # epochs, in the fixed order of the four points
        wrong = 0
        for i in range(4):
            weights.append((float(p.w[0, 0]), float(p.w[1, 0]), float(p.b[0])))
            p, m = one(p, x[i:i + 1], d[i:i + 1], 1.0)
            wrong += int(m[0])
        errors.append(wrong)
    last = weights[-1]  # the weights revisit a state: the length of the cycle, in samples
    cycle = next((len(weights) - 1 - i for i in range(len(weights) - 2, -1, -1) if weights[i] == last), None)

    model = nn.serial(nn.Dense(4), nn.Tanh(), nn.Dense(2))
    params = model.init(jax.random.key(cfg.seed), (-1, 2))[1]
    init, step = rules.make_step(model, rules.gradient(losses.softmax_cross_entropy()), optax.adam(0.05))
    ts, metrics = jax.lax.scan(lambda ts, k: step(ts, (x, labels), k), init(params),
                               jax.random.split(jax.random.key(cfg.seed), 500))
    net_pred = np.asarray(jnp.argmax(model(ts.params, x), axis=1))
    if cfg.plots:
        grid = np.linspace(-0.25, 1.25, 121, dtype=np.float32)
        gx = jnp.asarray(np.stack(np.meshgrid(grid, grid), -1).reshape(-1, 2))
        probs = jax.nn.softmax(model(ts.params, gx))[:, 1].reshape(len(grid), len(grid))
        plots.plot_xor(errors, np.array(weights), grid, np.asarray(probs), out / "xor.png", seed=cfg.seed)
    return {"perceptron_errors_per_epoch": errors, "perceptron_min_errors": min(errors),
            "weight_cycle_samples": cycle, "net": "Dense(4)-Tanh-Dense(2), Adam 0.05, 500 steps",
            "net_final_loss": float(metrics["loss"][-1]),
            "net_correct": int((net_pred == np.asarray(labels)).sum())}


# ----------------------------------------------------------------------------- 3. MNIST
def _correct(params, x, y):
    return jnp.sum(rules.classify(params, x) == y)


def _accuracy(params, x, y):
    return float(_correct(params, x, y)) / len(y)


def mnist(cfg: Config, out, data) -> dict:
    (xtr, ytr), (xte, yte) = data
    n, correct = len(xtr), jax.jit(_correct)
    xtr_all, ytr_all, xte, yte = (jnp.asarray(a) for a in (xtr, ytr, xte, yte))
    d = np.asarray(rules.one_vs_rest(jnp.asarray(ytr), 10))
    model = nn.serial(nn.Dense(10))
    zeros = (DenseParams(jnp.zeros((784, 10)), jnp.zeros((10,))),)
    # At w = 0 the perceptron criterion max(0, −t·z) has a zero gradient (its kink), so
    # gradient descent starts from Dense's own random init; the rule starts from zero.
    random = model.init(jax.random.key(cfg.seed), (-1, 784))[1]

    def evaluate(ts, epoch):
        p = ts.params[0]
        metrics = {"test_acc": int(correct(p, xte, yte)) / len(yte),
                   "train_errors": n - int(correct(p, xtr_all, ytr_all))}
        if isinstance(ts.rule_state, rules.Averaged):
            avg = rules.averaged_params(p, ts.rule_state)
            metrics["test_acc_averaged"] = int(correct(avg, xte, yte)) / len(yte)
        return metrics

    def plot_templates(ts, rows, plot_dir):
        plots.plot_templates(ts.params[0].w, rules.averaged_params(ts.params[0], ts.rule_state).w,
                             plot_dir / "templates.png", seed=cfg.seed)

    runs = {
        "perceptron": (rules.perceptron(1.0, averaged=True), 1.0, cfg.chunk, d, zeros, plot_templates),
        "sgd-perceptron-criterion": (rules.gradient(losses.perceptron()), cfg.gd_lr, cfg.gd_batch,
                                     2 * d - 1, random, None),
        "sgd-hinge": (rules.gradient(losses.hinge(1.0)), cfg.gd_lr, cfg.gd_batch, 2 * d - 1,
                      random, None),
    }
    results = {}
    for name, (rule, lr, size, targets, params, plot_fn) in runs.items():
        init, step = rules.make_step(model, rule, lr)
        loop_cfg = LoopConfig(out=str(out / f"mnist-{name}"), epochs=cfg.epochs, seed=cfg.seed,
                              resume=cfg.resume, progress=cfg.progress, plots=cfg.plots)
        summary = run(loop_cfg, init=lambda init=init, params=params: init(params), step=step,
                      batches=epoch_batches(cfg.seed, size, xtr, targets), evaluate=evaluate,
                      plots=plot_fn, name=f"mnist-{name}",
                      config_dict={"experiment": dataclasses.asdict(cfg), "rule": rule.name,
                                   "learning_rate": lr, "batch": size})
        rows = read_metrics(out / f"mnist-{name}" / "metrics.csv")
        results[name] = {"final": summary["final"], "rows": rows,
                         "compile_seconds": summary["compile_seconds"],
                         "train_seconds": summary["train_seconds"]}
    if cfg.plots:
        plots.plot_runs({k: v["rows"] for k, v in results.items()}, out / "mnist_runs.png", seed=cfg.seed)
    return {k: {kk: vv for kk, vv in v.items() if kk != "rows"} for k, v in results.items()}


# ------------------------------------------------------------ 4. beside scikit-learn
def versus_sklearn(cfg: Config, data, epochs: int) -> dict:
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import Perceptron, SGDClassifier
    except ImportError:
        return {"skipped": "scikit-learn is not installed (pip install 'jaxnn[bench]')"}
    (xtr, ytr), (xte, yte) = data
    x, d = jnp.asarray(xtr), rules.one_vs_rest(jnp.asarray(ytr), 10)  # on the device once

    @jax.jit
    def epoch(p, avg, x, d, order):  # the shuffle is a gather on the device, timed with the epoch
        return rules.averaged_epoch(p, avg, x[order], d[order], 1.0)

    p = DenseParams(jnp.zeros((784, 10)), jnp.zeros((10,)))
    avg = rules.averaged_start(p)
    t0 = time.perf_counter()
    epoch = epoch.lower(p, avg, x, d, jnp.arange(len(xtr))).compile()
    compile_s, t0 = time.perf_counter() - t0, time.perf_counter()
    for e in range(1, epochs + 1):
        p, avg, _ = epoch(p, avg, x, d, jnp.asarray(epoch_order(cfg.seed, e, len(xtr))))
    jax.block_until_ready(p)
    ours = {"seconds": time.perf_counter() - t0, "compile_seconds": compile_s,
            "test_acc_plain": _accuracy(p, xte, yte),
            "test_acc_averaged": _accuracy(rules.averaged_params(p, avg), xte, yte)}
    out = {"epochs": epochs, "jaxnn_averaged_perceptron": ours}
    models = {"sklearn_Perceptron": Perceptron(max_iter=epochs, tol=None, random_state=cfg.seed),
              "sklearn_SGDClassifier_perceptron_averaged": SGDClassifier(
                  loss="perceptron", average=True, max_iter=epochs, tol=None, random_state=cfg.seed)}
    for name, clf in models.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            t0 = time.perf_counter()
            clf.fit(xtr, ytr)
            seconds = time.perf_counter() - t0
        out[name] = {"seconds": seconds, "test_acc": float((clf.predict(xte) == yte).mean())}
    return out


def parse(argv) -> Config:
    ap = cli.parser("python -m experiments.rules.perceptron", __doc__.split("\n")[0])
    d = Config()
    ap.add_argument("--out", default=d.out)
    ap.add_argument("--epochs", type=cli.positive_int, default=d.epochs, help="MNIST epochs (default %(default)s)")
    ap.add_argument("--chunk", type=cli.positive_int, default=d.chunk, help="samples per step of the online rule")
    ap.add_argument("--gd-batch", type=cli.positive_int, default=d.gd_batch)
    ap.add_argument("--gd-lr", type=cli.positive_float, default=d.gd_lr)
    ap.add_argument("--seed", type=cli.seed, default=d.seed)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--train-subset", type=cli.positive_int, default=None)
    ap.add_argument("--test-subset", type=cli.positive_int, default=None)
    ap.add_argument("--no-sklearn", dest="sklearn", action="store_false")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-plots", dest="plots", action="store_false")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    return Config(**vars(ap.parse_args(argv))).validate()


def main(argv=None) -> int:
    started = time.perf_counter()
    cfg = parse(argv)
    out = cli.claim_out(cfg.out, resume=cfg.resume)
    summary = {"config": dataclasses.asdict(cfg), "separable": separable(cfg, out), "xor": xor(cfg, out)}
    data = (flat_mnist("train", cfg.data_dir, cfg.train_subset),
            flat_mnist("test", cfg.data_dir, cfg.test_subset))
    summary["mnist"] = mnist(cfg, out, data)
    if cfg.sklearn:
        summary["versus_sklearn"] = versus_sklearn(cfg, data, min(5, cfg.epochs))
    summary = write_summary(out, summary, started)
    print(f"wrote {out / 'summary.json'} ({summary['seconds_total']:.0f} s)")
    cli.print_table("perceptron: headline (from summary.json)", headline(summary))
    return 0


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.2f} %"


def headline(summary: dict) -> list[tuple[str, str]]:
    """The numbers the README row and the docs page quote, as (what, value) rows."""
    sep, xor_, runs = summary["separable"], summary["xor"], summary["mnist"]
    rows = [("separable: mistakes / Novikoff bound (R/γ)²",
             f"{sep['mistakes']} / {sep['novikoff_bound']:.0f} "
             f"({'within' if sep['within_bound'] else 'OVER'} the bound, {sep['epochs_to_converge']} epochs)"),
            ("XOR: perceptron's fewest errors in an epoch (of 4)",
             f"{xor_['perceptron_min_errors']} (not learned in "
             f"{len(xor_['perceptron_errors_per_epoch'])} epochs)" if xor_["perceptron_min_errors"]
             else "0 (learned)"),
            ("XOR: Dense(4)-Tanh-Dense(2) correct (of 4)", str(xor_["net_correct"]))]
    final = runs["perceptron"]["final"] or {}
    rows += [("MNIST perceptron, averaged: test accuracy", _pct(final.get("test_acc_averaged"))),
             ("MNIST perceptron, last weights: test accuracy", _pct(final.get("test_acc")))]
    for name in ("sgd-perceptron-criterion", "sgd-hinge"):
        rows.append((f"MNIST {name}: test accuracy", _pct((runs[name]["final"] or {}).get("test_acc"))))
    versus = summary.get("versus_sklearn")
    if versus and "skipped" in versus:
        rows.append(("scikit-learn comparison", versus["skipped"]))
    elif versus:
        ours = versus["jaxnn_averaged_perceptron"]
        rows.append((f"jaxnn averaged perceptron, {versus['epochs']} epochs",
                     f"{_pct(ours['test_acc_averaged'])} in {ours['seconds']:.2f} s"))
        for name in ("sklearn_Perceptron", "sklearn_SGDClassifier_perceptron_averaged"):
            rows.append((f"{name}, {versus['epochs']} epochs",
                         f"{_pct(versus[name]['test_acc'])} in {versus[name]['seconds']:.2f} s"))
    return rows


if __name__ == "__main__":
    sys.exit(cli_main(main))
