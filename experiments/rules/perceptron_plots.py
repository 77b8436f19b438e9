"""Figures of the perceptron experiment (headless PNGs; see experiments.rules.perceptron)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.lines import Line2D

from experiments.common.plots import integer_ticks, percent_axis, run_title, weight_grid
from experiments.rules.rules_common import figure, save


def _title(what: str, seed: int | None) -> str:
    return run_title(f"Perceptron: {what}", seed)


def _boundary(ax, w, b, lim=1.1, **kw):
    """Draw w·x + b = 0 inside the box [-lim, lim]²."""
    xs = np.linspace(-lim, lim, 2)
    if abs(w[1]) > abs(w[0]):
        ax.plot(xs, -(w[0] * xs + b) / w[1], **kw)
    elif abs(w[0]) > 0:
        ax.plot(-(w[1] * xs + b) / w[0], xs, **kw)


def plot_boundary_strip(x, labels, snapshots, true_line, path: Path, seed: int | None = None) -> Path:
    """The decision boundary after selected mistakes: one panel per snapshot
    (dict with "mistake", "w" (2,), "b", "point" (2,) the sample that caused it); one legend for
    the classes, both lines and the circled sample."""
    fig = figure(2.3 * len(snapshots), 3.1)
    axes = fig.subplots(1, len(snapshots), squeeze=False)[0]
    for ax, snap in zip(axes, snapshots):
        ax.scatter(*x[labels == 1].T, s=6, c="tab:red")
        ax.scatter(*x[labels == 0].T, s=6, c="tab:blue")
        _boundary(ax, *true_line, color="0.6", ls="--", lw=1)
        _boundary(ax, snap["w"], snap["b"], color="k", lw=1.5)
        if snap.get("point") is not None:
            ax.scatter(*snap["point"], s=60, facecolors="none", edgecolors="k")
        ax.set(xlim=(-1.1, 1.1), ylim=(-1.1, 1.1), xticks=[-1, 0, 1], yticks=[-1, 0, 1],
               aspect="equal", xlabel="x₁", title=f"after mistake {snap['mistake']}"
               if snap["mistake"] else "converged")
    axes[0].set_ylabel("x₂")
    fig.legend([Line2D([], [], ls="", marker="o", ms=4, color="tab:red"),
                Line2D([], [], ls="", marker="o", ms=4, color="tab:blue"),
                Line2D([], [], color="k", lw=1.5), Line2D([], [], color="0.6", ls="--", lw=1),
                Line2D([], [], ls="", marker="o", ms=8, mfc="none", mec="k")],
               ["class 1", "class 0", "perceptron boundary", "true line", "sample that caused the mistake"],
               loc="outside lower center", ncol=5, fontsize=8)
    fig.suptitle(_title("a separable set, boundary after each selected mistake", seed))
    return save(fig, path)


def plot_mistakes(per_epoch, bound, path: Path, seed: int | None = None) -> Path:
    """Mistakes per epoch and their running total against Novikoff's bound (R/γ)² (symlog y:
    linear below 1, so 0 mistakes shows)."""
    fig = figure(6, 3.2)
    ax = fig.subplots()
    epochs = np.arange(1, len(per_epoch) + 1)
    ax.bar(epochs, per_epoch, color="tab:blue", label="mistakes in the epoch")
    ax.plot(epochs, np.cumsum(per_epoch), "k.-", label="total so far")
    ax.axhline(bound, color="tab:red", ls="--", label=f"Novikoff bound (R/γ)² = {bound:.0f}")
    ax.set(xlabel="epoch", ylabel="mistakes (symlog scale)", yscale="symlog",
           title=_title("mistakes on a separable set", seed))
    integer_ticks(ax, "x", epochs)
    ax.legend(fontsize=8, loc="center right")
    return save(fig, path)


def plot_xor(errors_per_epoch, weights, grid, probs, path: Path, seed: int | None = None) -> Path:
    """Left: the perceptron's errors per epoch on XOR. Middle: its (w1, w2, b) before each sample.
    Right: P(class 1) of the two-layer net over the unit square, the four points on top."""
    fig = figure(12, 3.4)
    ax_err, ax_w, ax_net = fig.subplots(1, 3)
    epochs = np.arange(1, len(errors_per_epoch) + 1)
    ax_err.step(epochs, errors_per_epoch, where="mid")
    ax_err.set(xlabel="epoch", ylabel="errors (of 4)", ylim=(-0.2, 4.2),
               title="Perceptron on XOR: never 0")
    integer_ticks(ax_err, "both")
    for j, name in enumerate(("w1", "w2", "b")):
        ax_w.plot(np.arange(len(weights)), weights[:, j], ".-", label=name)
    ax_w.set(xlabel="sample presented", ylabel="value", title="its weights cycle")
    integer_ticks(ax_w, "x")
    ax_w.legend(fontsize=8)
    im = ax_net.imshow(probs, origin="lower", extent=(grid[0], grid[-1], grid[0], grid[-1]),
                       cmap="RdBu_r", vmin=0, vmax=1)
    pts = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    for cls, colour, sel in ((0, "tab:blue", [0, 3]), (1, "tab:red", [1, 2])):
        ax_net.scatter(*pts[sel].T, c=colour, edgecolors="k", s=80, label=f"XOR = {cls}")
    ax_net.set(title="two-layer net by backprop: solved", xlabel="x₁", ylabel="x₂")
    ax_net.legend(fontsize=7, loc="center", framealpha=0.9)
    fig.colorbar(im, ax=ax_net, shrink=0.8, label="P(class 1)")
    fig.suptitle(_title("XOR", seed))
    return save(fig, path)


def plot_templates(w_plain, w_avg, path: Path, seed: int | None = None) -> Path:
    """The ten one-vs-rest weight vectors as 28×28 images: plain (top) and averaged (bottom),
    each row on its own diverging scale centred on 0 with its colour bar."""
    fig = figure(13, 3.6)
    sub = fig.subfigures(2, 1)
    for sf, w, name in ((sub[0], w_plain, "plain"), (sub[1], w_avg, "averaged")):
        weight_grid(sf, np.asarray(w).T.reshape(-1, 28, 28), 10,
                    titles=[f"{name}: digit {j}" for j in range(10)])
    fig.suptitle(_title("MNIST one-vs-rest weights as images", seed))
    return save(fig, path)


def plot_runs(runs: dict, path: Path, seed: int | None = None) -> Path:
    """Test accuracy against epoch for each MNIST run: {name: metrics rows}; solid: the plain
    weights, dashed: the averaged ones. The accuracy axis spans at least 10 points."""
    fig = figure(6.5, 3.6)
    ax = fig.subplots()
    shown, epochs = [], []
    for name, rows in runs.items():
        for key, style in (("test_acc", "-"), ("test_acc_averaged", "--")):
            if rows and key in rows[0]:
                label = name + (" (averaged)" if key.endswith("averaged") else "")
                ax.plot([r["epoch"] for r in rows], [100 * r[key] for r in rows], style, marker=".",
                        label=label)
                shown += [100 * r[key] for r in rows]
                epochs += [r["epoch"] for r in rows]
    ax.set(xlabel="epoch", ylabel="test accuracy (%)",
           title=_title("MNIST, ten one-vs-rest units", seed))
    percent_axis(ax, shown)
    integer_ticks(ax, "x", epochs)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


__all__ = ["plot_boundary_strip", "plot_mistakes", "plot_runs", "plot_templates", "plot_xor"]
