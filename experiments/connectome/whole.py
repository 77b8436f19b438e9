"""Experiment B: does the whole wiring help? The full Varshney 2011 connectome (279 neurons) as a
rate network trained on the perceptual decision task, against controls with the same neurons.

    python -m experiments.connectome --experiment whole --out DIR [--quick]

Task: `jaxnn.neuro.tasks.perceptual_decision` (two noisy evidence channels and a fixation cue;
choose the stronger channel after the stimulus; goal 85 % correct on trials with coherence ≠ 0).
Inputs go to sensory neurons and outputs are read from command neurons (an abstract mapping, not
a claim about which neurons the worm uses for what):

    fixation cue -> URXL, URXR               output "fixate"   <- RIS
    evidence 1   -> ASHL, ASHR, ADLL, ADLR   output "choice 1" <- AVAL, AVAR, AVDL, AVDR, AVEL, AVER
    evidence 2   -> AWCL, AWCR, AWAL, AWAR   output "choice 2" <- AVBL, AVBR, PVCL, PVCR

Conditions, each with the same 279 named neurons, inputs and readouts, signs free per synapse
(`signs="synapse"`), the chemical scale κ set so every network starts with the same spectral radius:
real wiring; a degree-preserving shuffle (every in/out degree and gap-junction degree kept);
random sparse (as many chemical edges and gap-junction pairs, placed at random); dense (every pair
connected, the same total counts spread evenly). Each condition trains ≥ 5 seeds at once
(`jax.vmap`) on the same batches (Adam, learning rate decayed from lr to lr/10 on a cosine);
the performance on held-out trials (one fixed set, with the network noise) is measured after every
epoch.

Reported: final performance (mean, sd, min, max over seeds) and steps to criterion (the first
evaluation at or above the task's goal, 85 %; null when never reached) per condition, and steps to
a lower bar of 70 % (`LOWER_CRITERION`), since a run of minutes may not reach the goal. What it can claim:
whether, under this model and this task, the anatomical wiring trains faster or better than
wirings with the same degrees, the same density, or full connectivity. What it cannot: anything
about the worm's computations (the task is a primate task; the neuron mapping is arbitrary), and a
null result says the task does not need the worm's structure, not that the structure is irrelevant.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

from experiments.common import cli
from experiments.common.loop import LoopConfig, UsageError, fold_epoch_key, run, write_atomic
from experiments.connectome.ensemble import ensemble_step, init_ensemble
from jaxnn.neuro import tasks
from jaxnn.neuro.connectome import (
    Wiring,
    connectome_layer,
    connectome_spec,
    degree_preserving_shuffle,
    dense,
    random_sparse,
)

INPUTS = (("URXL", "URXR"), ("ASHL", "ASHR", "ADLL", "ADLR"), ("AWCL", "AWCR", "AWAL", "AWAR"))
READOUT = (("RIS",), ("AVAL", "AVAR", "AVDL", "AVDR", "AVEL", "AVER"), ("AVBL", "AVBR", "PVCL", "PVCR"))
CONDITIONS = ("real", "shuffle", "random_sparse", "dense")
LOWER_CRITERION = 0.70  # a second, lower bar: the task's goal (85 %) may not be reached in a short run


@dataclasses.dataclass(frozen=True)
class Config:
    out: str
    quick: bool = False
    seeds: int = 5
    epochs: int = 24
    steps_per_epoch: int = 25
    batch: int = 16
    lr: float = 0.05
    noise: float = 0.05
    dt: float = 20.0
    tau: float = 100.0
    readout_scale: float = 10.0
    eval_trials: int = 256
    seed: int = 0
    data_dir: str | None = None
    conditions: tuple[str, ...] = CONDITIONS
    resume: bool = False
    progress: bool = True
    plots: bool = True

    def filled(self) -> Config:
        cfg = (dataclasses.replace(self, seeds=2, epochs=2, steps_per_epoch=5, eval_trials=64)
               if self.quick else self)
        unknown = sorted(set(cfg.conditions) - set(CONDITIONS))
        if unknown:
            raise UsageError(f"unknown conditions {unknown}; expected some of {CONDITIONS}")
        if cfg.seeds < 1 or cfg.epochs < 1 or cfg.steps_per_epoch < 1 or cfg.batch < 1:
            raise UsageError("--seeds, --epochs, --steps-per-epoch and --batch must be >= 1")
        return cfg


def wirings(full: Any, seed: int) -> dict[str, Wiring]:
    real = Wiring(tuple(full.neurons), np.asarray(full.chemical, np.float64),
                  np.asarray(full.gap, np.float64))
    return {"real": real, "shuffle": degree_preserving_shuffle(real, seed=seed + 1),
            "random_sparse": random_sparse(real, seed=seed + 2), "dense": dense(real)}


def train_condition(cfg: Config, name: str, wiring: Wiring, task: Any, out: Path) -> dict:
    spec = connectome_spec(wiring, INPUTS, READOUT, signs="synapse", tau=cfg.tau, dt=cfg.dt,
                           noise=cfg.noise, rec_gain=1.0, readout_scale=cfg.readout_scale)
    layer = connectome_layer(spec)
    total = cfg.epochs * cfg.steps_per_epoch  # Adam with the rate decayed to lr/10 (cosine)
    init, step = ensemble_step(layer, task.loss, optax.adam(
        optax.cosine_decay_schedule(cfg.lr, total, alpha=0.1)))
    sample = jax.jit(task.sample, static_argnums=1)
    eval_key = jax.random.fold_in(jax.random.key(cfg.seed), 2 ** 31 - 1)
    held_out = sample(eval_key, cfg.eval_trials)
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))

    @jax.jit
    def performance(params):
        def one(p):
            return task.performance(layer(p, held_out.x, key=jax.random.fold_in(eval_key, 1)),
                                    held_out)
        return jax.vmap(one)(params)

    history: list[list[float]] = []

    def batches(epoch):
        key = jax.random.fold_in(fold_epoch_key(cfg.seed, epoch), 10 ** 6)
        trials = [sample(jax.random.fold_in(key, i), cfg.batch) for i in range(cfg.steps_per_epoch)]
        return [(t.x, (t.target, t.weight)) for t in trials]

    def evaluate(ts, epoch):
        perf = np.asarray(performance(ts.params), np.float64)
        history.append(perf.tolist())
        return {"performance_mean": float(perf.mean()), "performance_min": float(perf.min())}

    final: dict[str, Any] = {}

    def summarize(ts):
        final["ts"] = ts
        return {}

    loop = LoopConfig(out=str(out), epochs=cfg.epochs, seed=cfg.seed, resume=cfg.resume,
                      progress=cfg.progress, plots=False)
    summary = run(loop, init=lambda: init_ensemble(layer, init, seeds, (cfg.batch, task.n_steps, task.n_in)),
                  step=step, batches=batches, evaluate=evaluate, name=f"whole {name}",
                  summarize=summarize, config_dict={**dataclasses.asdict(cfg), "condition": name})
    perf = np.asarray(history)  # (epochs evaluated now, seeds)
    steps = (np.arange(len(history)) + 1 + (cfg.epochs - len(history))) * cfg.steps_per_epoch
    def first(goal):
        out = []
        for s in range(perf.shape[1]):
            hit = np.flatnonzero(perf[:, s] >= goal)
            out.append(int(steps[hit[0]]) if hit.size else None)
        return out

    to_criterion, to_lower = first(task.goal), first(LOWER_CRITERION)
    final_perf = perf[-1]
    reached = [t for t in to_criterion if t is not None]
    reached_lower = [t for t in to_lower if t is not None]
    return {
        "condition": name, "chemical_edges": int((wiring.chemical > 0).sum()),
        "gap_pairs": int((np.triu(wiring.gap, 1) > 0).sum()),
        "final_performance": {"mean": float(final_perf.mean()), "sd": float(final_perf.std(ddof=0)),
                              "min": float(final_perf.min()), "max": float(final_perf.max()),
                              "per_seed": final_perf.tolist()},
        "steps_to_criterion": {"per_seed": to_criterion, "reached": len(reached),
                               "median_of_reached": float(np.median(reached)) if reached else None},
        "steps_to_lower_criterion": {"criterion": LOWER_CRITERION, "per_seed": to_lower,
                                     "reached": len(reached_lower),
                                     "median_of_reached": (float(np.median(reached_lower))
                                                           if reached_lower else None)},
        "curve_steps": steps.tolist(), "curve": perf.tolist(),
        "seconds": summary["seconds"]["total"], "_spec": spec, "_layer": layer, "_ts": final["ts"],
    }


def run_whole(cfg: Config) -> dict:
    from jaxnn.data.connectome import load_connectome

    cfg = cfg.filled()
    out = Path(cfg.out)
    full = load_connectome("varshney2011", cfg.data_dir)
    task = tasks.perceptual_decision(dt=cfg.dt)
    results = {}
    for name, wiring in wirings(full, cfg.seed).items():
        if name in cfg.conditions:
            results[name] = train_condition(cfg, name, wiring, task, out / name)
    public = {k: {kk: vv for kk, vv in r.items() if not kk.startswith("_")} for k, r in results.items()}
    summary = {
        "experiment": "whole", "data": "varshney2011", "neurons": len(full.neurons),
        "task": task.name, "goal": task.goal,
        "command": "python -m experiments.connectome --experiment whole --out " + cfg.out
                   + (" --quick" if cfg.quick else ""),
        "config": dataclasses.asdict(cfg), "inputs": INPUTS, "readout": READOUT,
        "conditions": public,
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    if cfg.plots:
        from experiments.connectome import plots
        plots.whole_figures(out / "plots", full, results, task)
    return summary


def headline(summary: dict) -> None:
    """Print each wiring's final performance and steps to the two criteria as a table."""
    rows = []
    for name, r in summary["conditions"].items():
        f = r["final_performance"]
        rows.append({"condition": name, "edges": r["chemical_edges"],
                     "final performance, mean ± sd [min, max]":
                         f"{f['mean']:.3f} ± {f['sd']:.3f} [{f['min']:.3f}, {f['max']:.3f}]",
                     f"steps to {summary['goal']:.0%} (per seed)": r["steps_to_criterion"]["per_seed"],
                     f"steps to {LOWER_CRITERION:.0%} (per seed)": r["steps_to_lower_criterion"]["per_seed"]})
    cli.print_table(f"whole connectome ({summary['neurons']} neurons), task {summary['task']} "
                    f"(goal {summary['goal']})", rows)


def main(cfg: Config) -> int:
    summary = run_whole(cfg)
    headline(summary)
    return 0


__all__ = ["CONDITIONS", "Config", "INPUTS", "READOUT", "headline", "main", "run_whole",
           "train_condition", "wirings"]
