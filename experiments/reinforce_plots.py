"""Figures of `experiments.reinforce`: regret against trials (bandit), return against
episodes (CartPole), held-out accuracy against trials for both learning rules (decision)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure(n_panels: int):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, n_panels, figsize=(5.2 * n_panels, 3.8), squeeze=False)
    return plt, fig, axes[0]


def _save(plt, fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def bandit_curves(curves: dict, path: Path) -> Path:
    """Cumulative regret and per-trial regret (mean over problems) against trials."""
    plt, fig, (ax_cum, ax_rate) = _figure(2)
    for name, per_trial in curves.items():
        per_trial = np.asarray(per_trial)
        t = np.arange(1, len(per_trial) + 1)
        ax_cum.plot(t, np.cumsum(per_trial), label=name)
        window = max(1, len(per_trial) // 50)
        smooth = np.convolve(per_trial, np.ones(window) / window, mode="valid")
        ax_rate.plot(t[window - 1:], smooth, label=name)
    ax_cum.set(xlabel="trial", ylabel="cumulative regret", title="10-armed bandit")
    ax_rate.set(xlabel="trial", ylabel="regret per trial", yscale="log")
    ax_cum.legend(fontsize=8)
    return _save(plt, fig, path)


def cartpole_curves(runs: dict, solved: float, path: Path) -> Path:
    """Return of each training episode (100-episode moving mean) against episodes, per seed."""
    plt, fig, (ax,) = _figure(1)
    for seed, returns in runs.items():
        returns = np.asarray(returns)
        if len(returns) >= 100:
            c = np.cumsum(np.concatenate([[0.0], returns]))
            ax.plot(np.arange(100, len(returns) + 1), (c[100:] - c[:-100]) / 100, label=f"seed {seed}")
    ax.axhline(solved, color="k", ls="--", lw=0.8, label=f"solved ({solved:g})")
    ax.set(xlabel="training episodes", ylabel="mean return, last 100 episodes",
           title="CartPole-v1, REINFORCE")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


def decision_curves(runs: dict, goal: float, path: Path) -> Path:
    """Held-out accuracy against trials seen, one line per seed, a colour per learning rule;
    dots where a run first reached the criterion."""
    plt, fig, (ax,) = _figure(1)
    colours = {"supervised": "tab:blue", "reinforce": "tab:red"}
    for method, seeds in runs.items():
        for i, run in enumerate(seeds):
            perf = np.asarray(run["held_out_correct"])
            trials = np.arange(1, len(perf) + 1) * run["trials_per_update"]
            label = {"supervised": "supervised BPTT", "reinforce": "REINFORCE (reward only)"}[method]
            ax.plot(trials, perf, color=colours[method], lw=0.8, alpha=0.8,
                    label=label if i == 0 else None)
            if run["trials_to_criterion"] > 0:
                ax.plot(run["trials_to_criterion"], goal, "o", color=colours[method], ms=4)
    ax.axhline(goal, color="k", ls="--", lw=0.8)
    ax.set(xlabel="training trials", ylabel="held-out fraction correct (c ≠ 0)", xscale="log",
           title="Perceptual decision, same RateRNN")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)


__all__ = ["bandit_curves", "cartpole_curves", "decision_curves"]
