"""Figures of `experiments.reward.reinforce`: regret against trials (bandit), return against
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


def decision_curves(runs: dict, goal: float, window: int, path: Path) -> Path:
    """Left: held-out accuracy (mean of the last `window` updates, the criterion's measure)
    against trials, one line per seed, a colour per learning rule. Right: trials to
    criterion per seed, and the median."""
    plt, fig, (ax, ax_n) = _figure(2)
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
                  color=colours[method])
        if reached:
            ax_n.hlines(np.median(reached), j - 0.25, j + 0.25, color=colours[method])
    ax.axhline(goal, color="k", ls="--", lw=0.8)
    ax.set(xlabel="training trials", ylabel=f"held-out fraction correct (c ≠ 0), mean of {window}",
           title="Perceptual decision, same RateRNN")
    ax.legend(fontsize=8)
    ax_n.set_xticks(range(len(runs)), [labels[m] for m in runs])
    ax_n.set(xlim=(-0.6, len(runs) - 0.4), ylim=(0, None), ylabel=f"trials to {goal:.0%}",
             title="per seed; bar = median")
    return _save(plt, fig, path)


__all__ = ["bandit_curves", "cartpole_curves", "decision_curves"]
