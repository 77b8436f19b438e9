"""Train a firing-rate network (`jaxnn.RateRNN`) on a cognitive or motor task by backprop
through time, hand-written or autodiff, on the shared loop (`experiments.common.loop`).

    python -m experiments.rate.rate_rnn --task perceptual_decision --out runs/rnn_pd [--grad manual]

Tasks: perceptual_decision, context_decision, delayed_match_to_sample, sine_generation
(`jaxnn.neuro.tasks`). Each epoch is --steps-per-epoch Adam steps of `jaxnn.train_step` on
fresh batches of trials drawn from (seed, epoch, step); after each epoch the task's performance is
measured on --eval-trials fixed held-out trials (with the same recurrent noise as training).
steps_to_criterion in summary.json is the first step count at which an evaluation met the
task's goal (Song et al. 2016's stopping rule), or null. OUT also gets metrics.csv,
checkpoints (--resume continues bit for bit) and plots/ (`experiments.rate.rate_rnn_plots`).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import jax
import optax

import jaxnn as nn
from experiments.common import cli
from experiments.common.loop import LoopConfig, UsageError, cli_main, fold_epoch_key, read_metrics, run
from experiments.rate import rate_rnn_plots
from jaxnn.layers.recurrent import RateRNN
from jaxnn.neuro import tasks

# Per task: units, epochs, recurrent noise, learning rate, initial spectral radius.
DEFAULTS = {
    "perceptual_decision": dict(hidden=64, epochs=8, noise=0.05, lr=1e-2, rec_gain=1.0),
    "context_decision": dict(hidden=64, epochs=12, noise=0.05, lr=1e-2, rec_gain=1.0),
    "delayed_match_to_sample": dict(hidden=64, epochs=12, noise=0.05, lr=3e-3, rec_gain=1.5),
    "sine_generation": dict(hidden=64, epochs=12, noise=0.0, lr=1e-2, rec_gain=1.5),
}


@dataclasses.dataclass(frozen=True)
class Config:
    task: str
    out: str
    grad: str = "manual"
    seed: int = 0
    hidden: int | None = None
    epochs: int | None = None
    steps_per_epoch: int = 50
    batch: int = 64
    lr: float | None = None
    noise: float | None = None
    rec_gain: float | None = None
    dale: bool = True
    connectivity: float | None = None
    tau: float = 100.0
    dt: float = 20.0
    eval_trials: int = 512
    resume: bool = False
    progress: bool = True
    plots: bool = True

    def filled(self) -> Config:
        """The task's defaults in place of every option left unset; checked before any I/O."""
        if self.task not in DEFAULTS:
            raise UsageError(f"--task must be one of {', '.join(DEFAULTS)}, got {self.task!r}")
        if self.grad not in nn.backprop.METHODS:
            raise UsageError(f"--grad must be manual or autodiff, got {self.grad!r}")
        cfg = dataclasses.replace(self, **{k: v for k, v in DEFAULTS[self.task].items()
                                           if getattr(self, k) is None})
        for name in ("hidden", "steps_per_epoch", "batch", "eval_trials"):
            if getattr(cfg, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be a positive integer")
        if not (cfg.lr > 0 and cfg.noise >= 0 and cfg.rec_gain > 0 and 0 < cfg.dt <= cfg.tau):
            raise UsageError("need --lr > 0, --noise >= 0, --rec-gain > 0 and 0 < --dt <= --tau")
        if cfg.connectivity is not None and not 0 < cfg.connectivity <= 1:
            raise UsageError(f"--connectivity must be in (0, 1], got {cfg.connectivity}")
        return cfg


def build(cfg: Config):
    """(task, layer) for a filled config."""
    task = tasks.get(cfg.task, dt=cfg.dt)
    layer = RateRNN(cfg.hidden, task.n_out, tau=cfg.tau, dt=cfg.dt, noise=cfg.noise, dale=cfg.dale,
                    connectivity=cfg.connectivity, mask_seed=cfg.seed, rec_gain=cfg.rec_gain)
    return task, layer


def outputs(layer, params, x, key):
    """The network's outputs on trials x (noisy when the layer has noise), no training."""
    return layer(params, x, key=key)


def train_and_evaluate(cfg: Config) -> dict:
    cfg = cfg.filled()
    loop_cfg = LoopConfig(out=cfg.out, epochs=cfg.epochs, seed=cfg.seed, resume=cfg.resume,
                          progress=cfg.progress, plots=cfg.plots).validate()
    task, layer = build(cfg)
    init, step = nn.train_step(layer, task.loss, optax.adam(cfg.lr), cfg.grad, donate=True)
    sample = jax.jit(task.sample, static_argnums=1)

    def start():
        _, params, state = layer.init(jax.random.key(cfg.seed), (cfg.batch, task.n_steps, task.n_in))
        return init(params, state)

    def batches(epoch):
        """(x, (target, weight)) of fresh trials per step, a function of (seed, epoch, step)."""
        epoch_key = jax.random.fold_in(fold_epoch_key(cfg.seed, epoch), 10 ** 6)
        trials = [sample(jax.random.fold_in(epoch_key, i), cfg.batch)
                  for i in range(cfg.steps_per_epoch)]
        return [(t.x, (t.target, t.weight)) for t in trials]

    eval_key = jax.random.fold_in(jax.random.key(cfg.seed), 2 ** 31 - 1)  # apart from training
    held_out = sample(eval_key, cfg.eval_trials)

    @jax.jit
    def performance(params):
        y = outputs(layer, params, held_out.x, jax.random.fold_in(eval_key, 1))
        return task.performance(y, held_out), task.loss.apply(y, (held_out.target, held_out.weight))

    def evaluate(ts, epoch):
        perf, loss = performance(ts.params)
        return {"performance": float(perf), "eval_loss": float(loss)}

    def summarize(ts):
        rows = read_metrics(Path(cfg.out) / "metrics.csv")
        reached = [r["epoch"] for r in rows if task.reached(r["performance"])]
        return {"task": task.name, "goal": task.goal, "higher_is_better": task.higher_is_better,
                "final_performance": rows[-1]["performance"],
                "steps_to_criterion": reached[0] * cfg.steps_per_epoch if reached else None,
                "trials_to_criterion": reached[0] * cfg.steps_per_epoch * cfg.batch if reached else None,
                "reached_goal": task.reached(rows[-1]["performance"])}

    def plots(ts, rows, out_dir):
        rate_rnn_plots.write_all(task, layer, ts.params, rows, out_dir, seed=cfg.seed,
                                 steps_per_epoch=cfg.steps_per_epoch, dale=cfg.dale,
                                 connectivity=cfg.connectivity)

    return run(loop_cfg, init=start, step=step, batches=batches,
               evaluate=evaluate, plots=plots, config_dict=dataclasses.asdict(cfg),
               name=f"rate_rnn {cfg.task}", summarize=summarize)


def parse_args(argv=None) -> Config:
    ap = cli.parser("python -m experiments.rate.rate_rnn", __doc__)
    ap.add_argument("--task", required=True, choices=list(DEFAULTS))
    ap.add_argument("--out", required=True)
    ap.add_argument("--grad", default="manual", choices=nn.backprop.METHODS)
    for name, kind in [("seed", cli.seed), ("hidden", cli.positive_int), ("epochs", cli.positive_int),
                       ("steps-per-epoch", cli.positive_int), ("batch", cli.positive_int),
                       ("lr", cli.positive_float), ("noise", cli.nonnegative_float),
                       ("rec-gain", cli.positive_float), ("connectivity", cli.fraction),
                       ("tau", cli.positive_float), ("dt", cli.positive_float),
                       ("eval-trials", cli.positive_int)]:
        ap.add_argument(f"--{name}", type=kind)
    ap.add_argument("--no-dale", action="store_true", help="no sign constraint on the weights")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args(argv)
    given = {k: v for k, v in vars(args).items() if v is not None and k in Config.__annotations__}
    return Config(**given, dale=not args.no_dale, progress=not args.no_progress,
                  plots=not args.no_plots)


def main(argv=None) -> int:
    config = parse_args(argv)
    filled = config.filled()                          # every option checked before --out
    cli.check_memory(f"--hidden {filled.hidden}", 16 * filled.hidden ** 2)  # weights, grads, Adam
    cli.claim_out(config.out, resume=config.resume)
    summary = train_and_evaluate(config)
    steps = filled.epochs * filled.steps_per_epoch
    reached = summary["steps_to_criterion"]
    cli.print_table(f"rate_rnn --task {summary['task']}: headline (from summary.json)", [
        ("final performance (held-out trials)",
         f"{summary['final_performance']:.4f} (goal {'≥' if summary['higher_is_better'] else '≤'} "
         f"{summary['goal']}: {'met' if summary['reached_goal'] else 'not met'})"),
        ("steps to criterion", f"not reached in {steps} steps" if reached is None
         else f"{reached} ({summary['trials_to_criterion']} trials)")])
    return 0


if __name__ == "__main__":
    sys.exit(cli_main(main))
