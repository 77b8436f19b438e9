"""Hebbian and competitive learning: plain Hebb, Oja, Sanger, and a bank of units on MNIST.

    python -m experiments.rules.hebbian --out runs/hebbian            # full: 1600 units
    python -m experiments.rules.hebbian --out runs/hebbian-q --quick  # 400 units, fewer epochs

1. Gaussian data (50,000 samples) with known, distinct covariance eigenvalues (2-D: 4, 1;
   10-D: 20, 12, 8, 5, 2 … 0.2).
   Plain Hebb: ‖w‖ grows without bound. Oja: |cos| between w and the true first principal
   component against steps, beside the SVD of the same samples (hebb_oja.png).
   Sanger's GHA, top 4 of the 10-D set: principal angles to the true subspace and
   ‖WᵀW − I‖ against steps (sanger.png).
2. Real MNIST, inputs scaled to unit length: a bank of units trained without labels by a
   competitive rule (--rule kh: Krotov & Hopfield, the default; wta: winner-take-all),
   through the shared loop (units/); receptive fields (units/plots/receptive_fields.png).
   Units start at random training images (Krotov & Hopfield start from noise, which needs
   far more epochs than fit here).
3. A linear readout (softmax regression, Adam) on the units' responses relu(h)^power,
   standardised, through the shared loop (readout/, readout/plots/readout.png): the test
   accuracy. Krotov & Hopfield use power 4.5; the default here is --power 8.
4. k-means on the units' responses (standardised as the readout sees them, and raw) and, for
   comparison, on the pixels creates labels: each cluster takes the majority label of its
   members; the accuracy of those labels.
"""

from __future__ import annotations

import dataclasses
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import jaxnn as nn
from experiments.common import cli
from experiments.common.loop import LoopConfig, UsageError, cli_main, read_metrics, run
from experiments.rules import hebbian_plots as plots
from experiments.rules.kmeans import cluster_labels, in_chunks
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

FULL = {"units": 1600, "epochs": 4, "readout_epochs": 20}
QUICK = {"units": 400, "epochs": 2, "readout_epochs": 5}
RULES = {"wta": rules.winner_take_all, "kh": rules.krotov_hopfield}


@dataclasses.dataclass(frozen=True)
class Config:
    out: str = "runs/hebbian"
    quick: bool = False
    units: int = FULL["units"]
    epochs: int = FULL["epochs"]
    readout_epochs: int = FULL["readout_epochs"]
    rule: str = "kh"
    lr: float = 0.04
    batch: int = 100
    power: float = 8.0
    clusters: tuple[int, ...] = (10, 100)
    seed: int = 0
    data_dir: str | None = None
    train_subset: int | None = None
    test_subset: int | None = None
    resume: bool = False
    plots: bool = True
    progress: bool = True

    def validate(self) -> Config:
        check_positive(units=self.units, epochs=self.epochs, readout_epochs=self.readout_epochs,
                       lr=self.lr, batch=self.batch, power=self.power,
                       train_subset=self.train_subset, test_subset=self.test_subset)
        if self.rule not in RULES:
            raise UsageError(f"--rule must be one of {sorted(RULES)}, got {self.rule!r}")
        if any(not isinstance(k, int) or k < 2 for k in self.clusters):
            raise UsageError(f"--clusters must be integers >= 2, got {self.clusters}")
        if self.train_subset is not None and self.train_subset < max(self.units, self.batch, *self.clusters):
            raise UsageError(f"--train-subset {self.train_subset} is smaller than --units, --batch or "
                             f"--clusters")
        return self


# --------------------------------------------------------------------- 1. Gaussians
def gaussian(eigenvalues, count: int, seed: int):
    """x (count, n) float32, zero mean, covariance B diag(eigenvalues) Bᵀ; B (n, n) the true
    components as columns, in the order of the eigenvalues."""
    rng = np.random.default_rng(seed)
    n = len(eigenvalues)
    basis, _ = np.linalg.qr(rng.normal(size=(n, n)))
    x = (rng.normal(size=(count, n)) * np.sqrt(eigenvalues)) @ basis.T
    return jnp.asarray(x, jnp.float32), jnp.asarray(basis, jnp.float32)


def trace(rule, x, k: int, lr, batch: int, passes: int, seed: int, measure):
    """Run `rule` on a Dense(k) layer over `passes` shuffled passes of x; returns the final
    weights (n, k) and measure(w) after every step (stacked by lax.scan)."""
    n = x.shape[1]
    model = nn.serial(nn.Dense(k))
    params = model.init(jax.random.key(seed), (-1, n))[1]
    steps = passes * (len(x) // batch)
    init, step = rules.make_step(model, rule, lr(steps) if callable(lr) else lr)
    order = np.concatenate([epoch_order(seed, e, len(x))[:len(x) // batch * batch] for e in range(passes)])
    xs = x[order].reshape(steps, batch, n)

    def body(ts, xb):
        ts, _ = step(ts, (xb, None), jax.random.key(0))
        return ts, measure(ts.params[0].w)

    ts, measured = jax.jit(lambda ts, xs: jax.lax.scan(body, ts, xs))(init(params), xs)
    return ts.params[0].w, np.asarray(measured)


def decaying(lr0: float):
    """η falling linearly from lr0 to lr0 / 100 over the run (a function of its length): the
    step's noise around the fixed point shrinks with η."""
    return lambda steps: optax.linear_schedule(lr0, lr0 / 100, steps)


def gaussians(cfg: Config, out) -> dict:
    x2, b2 = gaussian([4.0, 1.0], 50_000, cfg.seed)
    eig10 = [20.0, 12.0, 8.0, 5.0, 2.0, 1.5, 1.0, 0.7, 0.4, 0.2]
    x10, b10 = gaussian(eig10, 50_000, cfg.seed + 1)
    _, hebb_norm = trace(rules.hebb(), x2[:10_000], 1, 0.01, 10, 1, cfg.seed, jnp.linalg.norm)
    oja = {}
    for name, x, basis in (("2-D", x2, b2), ("10-D", x10, b10)):
        pc = basis[:, 0]
        lam1 = float(jnp.var(x @ basis[:, 0]))
        w, cosine = trace(rules.oja(), x, 1, decaying(0.2 / lam1), 50, 2, cfg.seed,
                          lambda w, pc=pc: rules.cosine_to(w[:, 0], pc))
        svd_v = jnp.linalg.svd(x, full_matrices=False)[2][0]
        first = int(np.argmax(cosine >= 0.999)) + 1 if (cosine >= 0.999).any() else None
        oja[name] = {"cosine": cosine, "final_cosine": float(cosine[-1]), "steps_to_0.999": first,
                     "final_norm": float(jnp.linalg.norm(w)),
                     "svd_cosine": float(rules.cosine_to(svd_v, pc)),
                     "cosine_to_svd": float(rules.cosine_to(w[:, 0], svd_v))}
    true4 = b10[:, :4]
    w, measured = trace(rules.sanger(), x10, 4, decaying(0.2 / eig10[0]), 50, 3, cfg.seed,
                        lambda w: jnp.stack([rules.principal_angles(w, true4).max(),
                                             rules.orthogonality_error(w)]))
    angles = np.asarray(rules.principal_angles(w, true4))
    svd_angles = np.asarray(rules.principal_angles(jnp.linalg.svd(x10, full_matrices=False)[2][:4].T, true4))
    per_column = [float(rules.cosine_to(w[:, j], b10[:, j])) for j in range(4)]
    if cfg.plots:
        plots.plot_hebb_oja(hebb_norm, oja, out / "hebb_oja.png", seed=cfg.seed)
        plots.plot_sanger(measured[:, 0], measured[:, 1], angles, out / "sanger.png", seed=cfg.seed)
    return {
        "hebb": {"steps": len(hebb_norm), "weight_norm_first": float(hebb_norm[0]),
                 "weight_norm_last": float(hebb_norm[-1])},
        "oja": {k: {kk: vv for kk, vv in v.items() if kk != "cosine"} for k, v in oja.items()},
        "sanger": {"steps": len(measured), "principal_angles_deg": angles.tolist(),
                   "svd_principal_angles_deg": svd_angles.tolist(),
                   "orthogonality_error": float(measured[-1, 1]), "column_cosines": per_column},
        "eigenvalues_10d": eig10,
    }


# ------------------------------------------------------------------ 2-4. MNIST bank
def mnist(cfg: Config, out, data) -> dict:
    (xtr, ytr), (xte, yte) = data
    unit = jax.jit(rules.unit_length)
    xtr, xte = in_chunks(unit, xtr), in_chunks(unit, xte)
    n, k = len(xtr), cfg.units
    model = nn.serial(nn.Dense(k))
    start = np.random.default_rng(cfg.seed).choice(n, k, replace=False)
    params = (DenseParams(jnp.asarray(xtr[start].T), jnp.zeros((k,))),)
    steps = cfg.epochs * (n // cfg.batch)
    init, step = rules.make_step(model, RULES[cfg.rule](), optax.linear_schedule(cfg.lr, 0.0, steps))
    probe = jnp.asarray(xtr[:10_000])
    count_wins = jax.jit(lambda w, x: jnp.zeros(w.shape[1], jnp.int32).at[jnp.argmax(x @ w, 1)].add(1))

    def wins(w):
        """How often each unit wins on 10,000 training images. Arrays go in as arguments:
        closed over, XLA would try to constant-fold them."""
        return count_wins(w, probe)

    def evaluate_units(ts, epoch):
        return {"units_never_winning": int((wins(ts.params[0].w) == 0).sum())}

    def plot_units(ts, rows, plot_dir):
        plots.plot_receptive_fields(ts.params[0].w, wins(ts.params[0].w), plot_dir / "receptive_fields.png",
                                    rule=cfg.rule, seed=cfg.seed)

    loop = dict(seed=cfg.seed, resume=cfg.resume, progress=cfg.progress, plots=cfg.plots)
    final = {}  # the loop hands its final state to `summarize`; keep what the next stages need
    units = run(LoopConfig(out=str(out / "units"), epochs=cfg.epochs, **loop), init=lambda: init(params),
                step=step, batches=epoch_batches(cfg.seed, cfg.batch, xtr, ytr),
                evaluate=evaluate_units, plots=plot_units, name=f"units-{cfg.rule}",
                config_dict=dataclasses.asdict(cfg),
                summarize=lambda ts: final.update(w=ts.params[0].w) or {})
    w = final["w"]

    t0 = time.perf_counter()
    respond = jax.jit(rules.responses, static_argnames="power")
    ftr, fte = (in_chunks(lambda x: respond(w, x, power=cfg.power), a) for a in (xtr, xte))
    mean, std = ftr.mean(0), ftr.std(0) + 1e-6  # standardised, so Adam sees units on one scale
    ftr, fte = (ftr - mean) / std, (fte - mean) / std
    response_seconds = time.perf_counter() - t0

    readout = nn.serial(nn.Dense(10))
    r_steps = cfg.readout_epochs * (n // cfg.batch)
    r_init, r_step = rules.make_step(readout, rules.gradient(losses.softmax_cross_entropy()),
                                     optax.adam(optax.cosine_decay_schedule(1e-3, r_steps)))
    correct = jax.jit(lambda p, x, y: jnp.sum(jnp.argmax(readout(p, x), 1) == y))
    fte_j, yte_j = jnp.asarray(fte), jnp.asarray(yte)
    r_params = readout.init(jax.random.key(cfg.seed), (-1, k))[1]
    read = run(LoopConfig(out=str(out / "readout"), epochs=cfg.readout_epochs, **loop),
               init=lambda: r_init(r_params), step=r_step,
               batches=epoch_batches(cfg.seed, cfg.batch, ftr, ytr),
               evaluate=lambda ts, e: {"test_acc": int(correct(ts.params, fte_j, yte_j)) / len(yte)},
               plots=lambda ts, rows, plot_dir: plots.plot_readout(rows, plot_dir / "readout.png",
                                                                   rule=cfg.rule, seed=cfg.seed),
               name="readout", config_dict=dataclasses.asdict(cfg))
    rows = read_metrics(out / "readout" / "metrics.csv")

    t0 = time.perf_counter()
    sub = slice(0, min(n, 10_000))  # k-means on 10,000 training images keeps this to seconds
    clusters = {}
    spaces = {"units_standardised": (ftr[sub], fte),  # what the readout sees
              "units_raw": (ftr[sub] * std + mean, fte * std + mean),
              "pixels": (xtr[sub], xte)}
    for kk in cfg.clusters:
        clusters[f"k={kk}"] = {name: cluster_labels(a, ytr[sub], b, yte, kk, cfg.seed)
                               for name, (a, b) in spaces.items()}
    return {"units": {"rule": units["config"].get("rule"), "count": k, "final": units["final"],
                      "train_seconds": units["train_seconds"], "compile_seconds": units["compile_seconds"]},
            "readout": {"test_acc": rows[-1]["test_acc"], "final": read["final"],
                        "train_seconds": read["train_seconds"], "response_seconds": response_seconds},
            "kmeans": {**clusters, "seconds": time.perf_counter() - t0,
                       "note": "clusters fitted on the first 10,000 training images"}}


def parse(argv) -> Config:
    ap = cli.parser("python -m experiments.rules.hebbian", __doc__.split("\n")[0])
    d = Config()
    ap.add_argument("--out", default=d.out)
    ap.add_argument("--quick", action="store_true",
                    help=f"{QUICK['units']} units, {QUICK['epochs']} epochs, "
                         f"{QUICK['readout_epochs']} readout epochs")
    ap.add_argument("--units", type=cli.positive_int, default=None, help=f"default {FULL['units']}")
    ap.add_argument("--epochs", type=cli.positive_int, default=None, help=f"default {FULL['epochs']}")
    ap.add_argument("--readout-epochs", type=cli.positive_int, default=None, help=f"default {FULL['readout_epochs']}")
    ap.add_argument("--rule", default=d.rule,
                    help="kh (Krotov-Hopfield, the default) or wta (winner-take-all)")
    ap.add_argument("--lr", type=cli.positive_float, default=d.lr)
    ap.add_argument("--batch", type=cli.positive_int, default=d.batch)
    ap.add_argument("--power", type=cli.positive_float, default=d.power, help="responses relu(h)^power")
    ap.add_argument("--clusters", type=int, nargs="+", default=list(d.clusters))
    ap.add_argument("--seed", type=cli.seed, default=d.seed)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--train-subset", type=cli.positive_int, default=None)
    ap.add_argument("--test-subset", type=cli.positive_int, default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-plots", dest="plots", action="store_false")
    ap.add_argument("--no-progress", dest="progress", action="store_false")
    args = vars(ap.parse_args(argv))
    sizes = QUICK if args["quick"] else FULL
    for name in sizes:
        if args[name] is None:
            args[name] = sizes[name]
    args["clusters"] = tuple(args["clusters"])
    return Config(**args).validate()


def main(argv=None) -> int:
    started = time.perf_counter()
    cfg = parse(argv)
    cli.check_memory(f"--units {cfg.units}", 16 * 784 * cfg.units)         # weights and updates
    out = cli.claim_out(cfg.out, resume=cfg.resume)
    summary = {"config": dataclasses.asdict(cfg), "gaussians": gaussians(cfg, out)}
    data = (flat_mnist("train", cfg.data_dir, cfg.train_subset),
            flat_mnist("test", cfg.data_dir, cfg.test_subset))
    summary["mnist"] = mnist(cfg, out, data)
    summary = write_summary(out, summary, started)
    print(f"wrote {out / 'summary.json'} ({summary['seconds_total']:.0f} s)")
    cli.print_table("hebbian: headline (from summary.json)", headline(summary))
    return 0


def headline(summary: dict) -> list[tuple[str, str]]:
    """The numbers the README row and the docs page quote, as (what, value) rows."""
    g, m = summary["gaussians"], summary["mnist"]
    hebb = g["hebb"]
    rows = [("plain Hebb: weight norm, first → last step",
             f"{hebb['weight_norm_first']:.3g} → {hebb['weight_norm_last']:.3g} ({hebb['steps']} steps)")]
    for name, oja in g["oja"].items():
        steps = oja["steps_to_0.999"]
        rows.append((f"Oja {name}: abs cosine to PC1 (the SVD's)",
                     f"{abs(oja['final_cosine']):.4f} ({abs(oja['svd_cosine']):.4f}); ≥ 0.999 "
                     + (f"after {steps} steps" if steps is not None else "never")))
    sanger = g["sanger"]
    rows += [("Sanger 4 of 10-D: largest principal angle (the SVD's)",
              f"{max(sanger['principal_angles_deg']):.2f}° ({max(sanger['svd_principal_angles_deg']):.2f}°)"),
             ("Sanger: orthogonality error ‖WᵀW − I‖_F", f"{sanger['orthogonality_error']:.2e}")]
    units = m["units"]
    rows += [(f"{units['count']} {units['rule']} units: never winning",
              str((units["final"] or {}).get("units_never_winning", "–"))),
             (f"{units['count']} {units['rule']} units + softmax readout: test accuracy",
              f"{100 * m['readout']['test_acc']:.2f} %")]
    for k, spaces in m["kmeans"].items():
        if k.startswith("k="):
            for space, res in spaces.items():
                rows.append((f"k-means {k} on {space}: test accuracy by cluster label",
                             f"{100 * res['test_label_acc']:.2f} %"))
    return rows


if __name__ == "__main__":
    sys.exit(cli_main(main))
