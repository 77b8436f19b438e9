"""Figures of the Hebbian experiment (headless PNGs; see experiments.rules.hebbian)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.common.plots import integer_ticks, percent_axis, run_title, weight_grid
from experiments.rules.rules_common import figure, save


def plot_hebb_oja(hebb_norm, oja_runs: dict, path: Path, seed: int | None = None) -> Path:
    """Left: plain Hebb's weight norm against steps (log scale). Right: 1 − |cos| between
    Oja's weight and the true first component, per data set, with the SVD's as a line."""
    fig = figure(11, 3.6)
    ax_h, ax_o = fig.subplots(1, 2)
    steps = np.arange(1, len(hebb_norm) + 1)
    finite = np.isfinite(hebb_norm)
    ax_h.semilogy(steps[finite], hebb_norm[finite])
    ax_h.set(xlabel="step", ylabel="‖w‖", title="plain Hebb: the weight grows without bound")
    for name, run in oja_runs.items():
        line, = ax_o.semilogy(np.arange(1, len(run["cosine"]) + 1), 1 - np.asarray(run["cosine"]),
                              label=f"Oja, {name}")
        ax_o.axhline(1 - run["svd_cosine"], color=line.get_color(), ls=":", label=f"SVD, {name}")
    ax_o.axhline(1e-3, color="k", lw=0.8, ls="--", label="goal |cos| = 0.999")
    ax_o.set(xlabel="step", ylabel="1 − |cos(w, true PC1)|", title="Oja's rule finds the first PC")
    ax_o.legend(fontsize=7)
    for ax in (ax_h, ax_o):
        integer_ticks(ax, "x")
    fig.suptitle(run_title("Hebbian learning: plain Hebb and Oja", seed))
    return save(fig, path)


def plot_sanger(max_angle, ortho, final_angles, path: Path, seed: int | None = None) -> Path:
    """Sanger's GHA: the largest principal angle to the true top-k subspace and ‖WᵀW − I‖_F
    against steps; the final angles in the title."""
    fig = figure(11, 3.6)
    ax_a, ax_o = fig.subplots(1, 2)
    steps = np.arange(1, len(max_angle) + 1)
    ax_a.semilogy(steps, max_angle)
    ax_a.axhline(2.0, color="k", ls="--", lw=0.8, label="goal: < 2°")
    ax_a.set(xlabel="step", ylabel="largest principal angle (°)",
             title="angles at the end: " + ", ".join(f"{a:.2f}°" for a in final_angles))
    ax_a.legend(fontsize=8)
    ax_o.semilogy(steps, ortho)
    ax_o.set(xlabel="step", ylabel="‖WᵀW − I‖_F", title="the columns become orthonormal")
    for ax in (ax_a, ax_o):
        integer_ticks(ax, "x")
    fig.suptitle(run_title(f"Sanger's rule (GHA), top {len(final_angles)} components", seed))
    return save(fig, path)


def plot_receptive_fields(w, wins, path: Path, count: int = 100, rule: str | None = None,
                          seed: int | None = None) -> Path:
    """The `count` units that won most often, each weight vector (784,) as a 28×28 image on one
    shared colour scale with its colour bar: diverging (RdBu_r, ±max|w|) when any weight is
    negative, sequential from 0 when none is. w (784, K), wins (K,) how often each unit won."""
    order = np.argsort(-np.asarray(wins))[:count]
    fields = np.asarray(w)[:, order].T.reshape(-1, 28, 28)
    fig = figure(10.6, 10.6)
    weight_grid(fig, fields, 10)
    study = "Competitive learning" + (f" (--rule {rule})" if rule else "")
    fig.suptitle(run_title(study, seed, f"receptive fields of the {len(order)} most frequent "
                                        f"winners of {np.asarray(w).shape[1]} units"))
    return save(fig, path)


def plot_readout(rows, path: Path, rule: str | None = None, seed: int | None = None) -> Path:
    """Test accuracy of the linear readout against its epochs (the axis spans at least 10 points)."""
    fig = figure(5.5, 3.4)
    ax = fig.subplots()
    epochs = [r["epoch"] for r in rows]
    acc = [100 * r["test_acc"] for r in rows]
    ax.plot(epochs, acc, "o-")
    ax.set(xlabel="readout epoch", ylabel="test accuracy (%)",
           title=f"linear readout on the units: {acc[-1]:.2f}%")
    percent_axis(ax, acc)
    integer_ticks(ax, "x", epochs)
    ax.grid(alpha=0.3)
    fig.suptitle(run_title("Competitive learning" + (f" (--rule {rule})" if rule else ""), seed),
                 fontsize=10)
    return save(fig, path)


__all__ = ["plot_hebb_oja", "plot_readout", "plot_receptive_fields", "plot_sanger"]
