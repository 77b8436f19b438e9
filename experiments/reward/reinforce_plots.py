"""Figures of `experiments.reward.reinforce`: regret against trials (bandit), return against
episodes (CartPole), held-out accuracy against trials for both learning rules (decision)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from experiments.common.loop import save_figure
from experiments.common.plots import integer_ticks, run_title


def _figure(n_panels: int):
    """A Figure on its own Agg canvas (no pyplot, no global backend) and its row of axes."""
    fig = Figure(figsize=(5.2 * n_panels, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(1, n_panels, squeeze=False)[0]


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=120)
    fig.clear()
    return path


def _seeds(seeds) -> str | None:
    seeds = sorted(int(s) for s in seeds)
    if not seeds:
        return None
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    contiguous = seeds == list(range(seeds[0], seeds[-1] + 1))
    return f"seeds {seeds[0]}–{seeds[-1]}" if contiguous else "seeds " + ", ".join(map(str, seeds))


def moving_mean(values, window: int) -> np.ndarray:
    """mean of values[i−window+1 .. i] for i ≥ window−1: (len − window + 1,)."""
    c = np.cumsum(np.concatenate([[0.0], np.asarray(values, dtype=np.float64)]))
    return (c[window:] - c[:-window]) / window


def first_reach(values, window: int, goal: float) -> int:
    """The episode count (1-based, the window's last episode) at which the mean of the last
    `window` values first reaches `goal`, or −1."""
    if len(values) < window:
        return -1
    hit = np.flatnonzero(moving_mean(values, window) >= goal)
    return int(hit[0]) + window if hit.size else -1


def bandit_curves(curves: dict, path: Path, seed: int | None = None) -> Path:
    """Cumulative regret and per-trial regret (mean over problems, moving mean of len/50
    trials, log scale) against trials, one line per agent, legends on both panels."""
    fig, (ax_cum, ax_rate) = _figure(2)
    for name, per_trial in curves.items():
        per_trial = np.asarray(per_trial)
        t = np.arange(1, len(per_trial) + 1)
        ax_cum.plot(t, np.cumsum(per_trial), label=name)
        window = max(1, len(per_trial) // 50)
        smooth = np.convolve(per_trial, np.ones(window) / window, mode="valid")
        ax_rate.plot(t[window - 1:], smooth, label=name)
    ax_cum.set(xlabel="trial", ylabel="cumulative regret (reward units)",
               title="cumulative regret, mean over problems")
    ax_rate.set(xlabel="trial", ylabel="regret per trial (log scale)", yscale="log",
                title=f"per trial, mean over problems, moving mean of {window} trials")
    for ax in (ax_cum, ax_rate):
        ax.legend(fontsize=8, title="agent", title_fontsize=8)
        ax.grid(alpha=0.3)
        integer_ticks(ax, "x")
    fig.suptitle(run_title("10-armed bandit", seed))
    return _save(fig, path)


def cartpole_curves(runs: dict, solved: float, path: Path, window: int = 100) -> Path:
    """Return of each training episode (`window`-episode moving mean) against episodes, per seed
    {seed: returns}; each seed's solve point (the first window whose mean reaches `solved`) is
    marked. When every seed solved, the episode axis ends at 1.5 × the last solve point (at least
    2 windows) rather than at the end of training, and the axes say so."""
    fig, (ax,) = _figure(1)
    fig.set_size_inches(6.4, 4.2)
    longest, solves = 0, []
    for k, (seed, returns) in enumerate(runs.items()):
        returns = np.asarray(returns, dtype=np.float64)
        longest = max(longest, len(returns))
        if len(returns) < window:
            continue
        colour = f"C{k % 10}"
        at = first_reach(returns, window, solved)
        solves.append(at)
        label = f"seed {seed}: " + (f"solved at episode {at}" if at > 0 else "not solved")
        ax.plot(np.arange(window, len(returns) + 1), moving_mean(returns, window), color=colour,
                lw=1, label=label)
        if at > 0:
            ax.plot([at], [moving_mean(returns, window)[at - window]], "o", color=colour, ms=6,
                    mec="k")
    ax.axhline(solved, color="k", ls="--", lw=0.8, label=f"solved: mean ≥ {solved:g}")
    if solves and all(a > 0 for a in solves) and 1.5 * max(solves) < longest:
        end = max(int(1.5 * max(solves)), 2 * window)
        if end < longest:
            ax.set_xlim(window - 0.02 * end, end)
            ax.text(0.99, 0.02, f"axis ends at episode {end} of {longest} trained",
                    transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.35")
    ax.set(xlabel="training episode", ylabel=f"mean return of the last {window} episodes",
           ylim=(0, max(solved * 1.08, 1.0)))
    integer_ticks(ax, "x")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(run_title("CartPole-v1, REINFORCE", None, _seeds(runs) or ""), fontsize=11)
    return _save(fig, path)


def decision_curves(runs: dict, goal: float, window: int, path: Path, seeds_of=None) -> Path:
    """Left: held-out accuracy (mean of the last `window` updates, the criterion's measure)
    against trials, one line per seed, a colour per learning rule. Right: trials to
    criterion per seed, and the median. seeds_of: the seed numbers, for the title."""
    fig, (ax, ax_n) = _figure(2)
    colours = {"supervised": "tab:blue", "reinforce": "tab:red"}
    labels = {"supervised": "supervised BPTT", "reinforce": "REINFORCE (reward only)"}
    for j, (method, seeds) in enumerate(runs.items()):
        for i, run in enumerate(seeds):
            perf = np.asarray(run["held_out_correct"])
            w = min(window, len(perf))
            smooth = np.convolve(perf, np.ones(w) / w, mode="valid")
            trials = np.arange(w, len(perf) + 1) * run["trials_per_update"]
            ax.plot(trials, smooth, color=colours[method], lw=0.8, alpha=0.8,
                    label=labels[method] if i == 0 else None)
        reached = [r["trials_to_criterion"] for r in seeds if r["trials_to_criterion"] > 0]
        ax_n.plot(np.full(len(reached), j) + np.linspace(-0.1, 0.1, len(reached)), reached, "o",
                  color=colours[method], label="one seed" if j == 0 else None)
        if reached:
            ax_n.hlines(np.median(reached), j - 0.25, j + 0.25, color=colours[method],
                        label="median" if j == 0 else None)
        missed = len(seeds) - len(reached)
        if missed:
            ax_n.annotate(f"{missed} of {len(seeds)} not reached", (j, 0), xytext=(0, 4),
                          textcoords="offset points", ha="center", fontsize=7)
    ax.axhline(goal, color="k", ls="--", lw=0.8, label=f"criterion {goal:g}")
    ax.set(xlabel="training trials", ylabel=f"held-out fraction correct (c ≠ 0),\nmean of the last {window} updates",
           title="held-out accuracy", ylim=(0, 1.02))
    ax.legend(fontsize=8)
    integer_ticks(ax, "x")
    ax_n.set_xticks(range(len(runs)), [labels[m] for m in runs])
    ax_n.set(xlim=(-0.6, len(runs) - 0.4), ylim=(0, None), ylabel=f"trials to {goal:.0%}",
             title="trials to criterion per seed")
    if any(r["trials_to_criterion"] > 0 for seeds in runs.values() for r in seeds):
        ax_n.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax_n.legend(fontsize=8)
    else:
        ax_n.set_yticks([])
        ax_n.text(0.5, 0.5, "no seed reached the criterion", transform=ax_n.transAxes,
                  ha="center", va="center", color="0.35")
    n_seeds = max((len(s) for s in runs.values()), default=0)
    seeds = _seeds(seeds_of) if seeds_of is not None else (f"{n_seeds} seeds" if n_seeds != 1 else None)
    fig.suptitle(run_title("Perceptual decision, same RateRNN: supervised vs REINFORCE", None,
                           seeds or ""))
    return _save(fig, path)


__all__ = ["bandit_curves", "cartpole_curves", "decision_curves", "first_reach", "moving_mean"]
