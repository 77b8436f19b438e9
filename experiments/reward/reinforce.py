"""Learning by reward: REINFORCE on a bandit, on CartPole, and against supervised BPTT on the
perceptual decision task, each run on the shared loop (`experiments.common.loop`).

    python -m experiments.reward.reinforce --env bandit --out runs/rl_bandit
    python -m experiments.reward.reinforce --env cartpole --seeds 5 --out runs/rl_cartpole
    python -m experiments.reward.reinforce --env decision --seeds 5 --out runs/rl_decision

Each (method, seed) is one loop run in OUT/<method>_seed<k>/ (metrics.csv, checkpoints,
its summary.json); OUT/summary.json gathers them (regret per agent; episodes to solve
CartPole; trials to the 85 % criterion for both learning rules) and OUT/curves.png plots
them. The set-ups and their defaults are in `experiments.reward.reinforce_envs`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from experiments.common import cli
from experiments.common.loop import LoopConfig, UsageError, cli_main, machine, run, write_atomic
from experiments.reward import reinforce_plots
from experiments.reward.reinforce_envs import (
    DEFAULTS,
    METHODS,
    SOLVED,
    bandit_setup,
    cartpole_setup,
    decision_setup,
)

ENVS = tuple(DEFAULTS)


@dataclasses.dataclass(frozen=True)
class Config:
    env: str
    out: str
    seed: int = 0
    seeds: int = 1
    overrides: tuple = ()  # (name, value) pairs replacing DEFAULTS[env]
    resume: bool = False
    progress: bool = True
    plots: bool = True

    def options(self) -> dict:
        return {**DEFAULTS[self.env], **dict(self.overrides)}

    def validate(self) -> Config:
        """Every argument checked before any file is touched."""
        if self.env not in ENVS:
            raise UsageError(f"--env must be one of {', '.join(ENVS)}, got {self.env!r}")
        if not isinstance(self.seeds, int) or self.seeds < 1:
            raise UsageError(f"--seeds must be a positive integer, got {self.seeds!r}")
        o = self.options()
        for name, value in self.overrides:
            if name not in DEFAULTS[self.env]:
                raise UsageError(f"--{name.replace('_', '-')} does not apply to --env {self.env}")
            if not (value > 0 or (name == "noise" and value == 0)):
                raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value!r}")
        for name in ("epsilon", "gamma"):
            if o.get(name, 0.5) > 1:
                raise UsageError(f"--{name} must be at most 1, got {o[name]}")
        if o.get("batch", 2) < 2:
            raise UsageError(f"--batch must be at least 2 (the baseline leaves one out), got {o['batch']}")
        for loop_config in self.loop_configs().values():
            loop_config.validate()
        return self

    def labels(self) -> list[tuple[str, int, str | None]]:
        """(run label, seed, method) of every loop run."""
        methods = METHODS if self.env == "decision" else (None,)
        return [(f"{m or 'reinforce'}_seed{s}", s, m) for m in methods
                for s in range(self.seed, self.seed + self.seeds)]

    def loop_configs(self) -> dict[str, LoopConfig]:
        epochs = self.options()["epochs"]
        return {label: LoopConfig(out=str(Path(self.out) / label), epochs=epochs, seed=seed,
                                  resume=self.resume, progress=self.progress, plots=False)
                for label, seed, _ in self.labels()}


def train_and_evaluate(cfg: Config) -> dict:
    cfg.validate()
    t_start = time.perf_counter()
    options, results = cfg.options(), {}
    for (label, seed, method), loop_config in zip(cfg.labels(), cfg.loop_configs().values()):
        if cfg.env == "bandit":
            parts = bandit_setup(options, seed)
        elif cfg.env == "cartpole":
            parts = cartpole_setup(options, seed)
        else:
            parts = decision_setup(options, seed, method)
        results[label] = run(loop_config, **parts, name=f"{cfg.env} {label}",
                             config_dict={"env": cfg.env, "method": method, **options})
    summary = {"env": cfg.env, "options": options, "command": " ".join(sys.argv),
               **gather(cfg, results), "seconds_total": time.perf_counter() - t_start,
               "machine": machine()}
    out = Path(cfg.out)
    if cfg.plots:
        summary["figure"] = str(plot(cfg, results, out / "curves.png"))
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _stats(values: list[float]) -> dict:
    reached = [v for v in values if v > 0]
    return {"per_seed": values, "reached": f"{len(reached)}/{len(values)}",
            "median": float(np.median(reached)) if reached else None,
            "min": min(reached) if reached else None, "max": max(reached) if reached else None}


def _seconds(result: dict) -> float:
    return round(result["seconds"]["compile"] + result["train_seconds"], 2)


def gather(cfg: Config, results: dict) -> dict:
    """The numbers of every run, and the across-seed statistics of the env's measure."""
    if cfg.env == "bandit":
        return {"runs": {label: {"agents": r["agents"], "seconds": _seconds(r)}
                         for label, r in results.items()}}
    if cfg.env == "cartpole":
        runs = {label: {"episodes_to_solve": r["episodes_to_solve"],
                        "final_eval_mean_return_100": r["final_eval_mean_return_100"],
                        "seconds": _seconds(r)} for label, r in results.items()}
        return {"runs": runs, "solved_threshold": SOLVED,
                "episodes_to_solve": _stats([r["episodes_to_solve"] for r in runs.values()])}
    runs = {label: {"method": r["method"], "trials_to_criterion": r["trials_to_criterion"],
                    "final_held_out_correct": r["final_held_out_correct"],
                    "held_out_correct_last_50_updates": r["held_out_correct_last_50_updates"],
                    "seconds": _seconds(r)}
            for label, r in results.items()}
    per_method = {m: _stats([r["trials_to_criterion"] for r in runs.values() if r["method"] == m])
                  for m in METHODS}
    medians = [per_method[m]["median"] for m in METHODS]
    ratio = medians[1] / medians[0] if all(medians) else None
    return {"runs": runs, "goal": next(iter(results.values()))["goal"],
            "trials_to_criterion": per_method, "reinforce_over_supervised_median": ratio}


def plot(cfg: Config, results: dict, path: Path) -> Path:
    if cfg.env == "bandit":
        first = next(iter(results.values()))
        return reinforce_plots.bandit_curves(first["curves"]["regret_per_trial"], path, seed=cfg.seed)
    if cfg.env == "cartpole":
        runs = {label.rsplit("seed", 1)[1]: r["curves"]["train_return"] for label, r in results.items()}
        return reinforce_plots.cartpole_curves(runs, SOLVED, path)
    runs = {m: [{**r["curves"], "trials_to_criterion": r["trials_to_criterion"]}
                for r in results.values() if r["method"] == m] for m in METHODS}
    return reinforce_plots.decision_curves(runs, next(iter(results.values()))["goal"],
                                           cfg.options()["criterion_window"], path,
                                           seeds_of=range(cfg.seed, cfg.seed + cfg.seeds))


def parse_args(argv: list[str] | None) -> Config:
    parser = cli.ArgumentParser(prog="python -m experiments.reward.reinforce", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True, choices=ENVS)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=cli.seed, default=0, help="first seed")
    parser.add_argument("--seeds", type=cli.positive_int, default=1, help="number of seeds")
    for name in ("epochs", "steps", "batch", "hidden", "problems", "chunk", "eval_trials"):
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=cli.positive_int,
                            help="default: reinforce_envs.DEFAULTS[env]")
    for name, kind in (("lr", cli.positive_float), ("epsilon", cli.positive_float),
                       ("gamma", cli.positive_float), ("noise", cli.nonnegative_float)):
        parser.add_argument(f"--{name}", type=kind, help="default: reinforce_envs.DEFAULTS[env]")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    given = {k: v for k, v in vars(args).items()
             if v is not None and k in {n for d in DEFAULTS.values() for n in d}}
    return Config(env=args.env, out=args.out, seed=args.seed, seeds=args.seeds,
                  overrides=tuple(sorted(given.items())), resume=args.resume,
                  progress=not args.no_progress, plots=not args.no_plots)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv).validate()
    o = config.options()
    cli.check_memory(f"--batch {o.get('batch', 1)} × --hidden {o.get('hidden', 1)}",
                     4 * o.get("batch", 1) * o.get("hidden", 1) * 500)  # ≤ 500 steps an episode
    cli.claim_out(config.out, resume=config.resume)
    summary = train_and_evaluate(config)
    cli.print_table(f"reinforce --env {summary['env']}: headline (from summary.json)", headline(summary))
    return 0


def _spread(stats: dict, unit: str) -> str:
    """'median M (min A – max B) UNIT, R reached' from `_stats`."""
    if stats["median"] is None:
        return f"not reached ({stats['reached']} seeds)"
    return (f"median {stats['median']:g} (min {stats['min']:g} – max {stats['max']:g}) {unit}, "
            f"{stats['reached']} seeds reached")


def headline(summary: dict) -> list[tuple[str, str]] | list[dict]:
    """The numbers the README row and the docs page quote: (what, value) rows, or for the
    bandit one row per agent of the first run."""
    if summary["env"] == "bandit":
        run_ = next(iter(summary["runs"].values()))
        rows: list[dict] = []
        for agent, numbers in run_["agents"].items():
            horizon = max(numbers["cumulative_regret"], key=int)
            optimal = next(k for k in numbers if k.startswith("optimal_arm_last_"))
            rows.append({"agent": agent, f"cumulative regret at trial {horizon}":
                         f"{numbers['cumulative_regret'][horizon]:.1f}",
                         f"optimal arm, last {optimal.rsplit('_', 1)[1]} trials": f"{100 * numbers[optimal]:.1f} %"})
        return rows
    if summary["env"] == "cartpole":
        rows2 = [(f"episodes to solve (mean return ≥ {summary['solved_threshold']} over 100)",
                  _spread(summary["episodes_to_solve"], "episodes"))]
        for label, r in summary["runs"].items():
            solved = r["episodes_to_solve"]
            rows2.append((f"{label}: episodes to solve, final mean return (100 eval episodes)",
                          f"{solved if solved > 0 else 'not solved'}, "
                          f"{r['final_eval_mean_return_100']:.1f}"))
        return rows2
    rows3 = [(f"{method}: trials to criterion (goal {summary['goal']})", _spread(stats, "trials"))
             for method, stats in summary["trials_to_criterion"].items()]
    ratio = summary["reinforce_over_supervised_median"]
    rows3.append(("reinforce / supervised, medians", "–" if ratio is None else f"{ratio:.1f}×"))
    return rows3


if __name__ == "__main__":
    sys.exit(cli_main(main))
