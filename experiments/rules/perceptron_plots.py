"""Figures of the perceptron experiment (headless PNGs; see experiments.rules.perceptron)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.rules.rules_common import figure, image_grid, save


def _boundary(ax, w, b, lim=1.1, **kw):
    """Draw w·x + b = 0 inside the box [-lim, lim]²."""
    xs = np.linspace(-lim, lim, 2)
    if abs(w[1]) > abs(w[0]):
        ax.plot(xs, -(w[0] * xs + b) / w[1], **kw)
    elif abs(w[0]) > 0:
        ax.plot(-(w[1] * xs + b) / w[0], xs, **kw)


def plot_boundary_strip(x, labels, snapshots, true_line, path: Path) -> Path:
    """The decision boundary after selected mistakes: one panel per snapshot
    (dict with "mistake", "w" (2,), "b", "point" (2,) the sample that caused it)."""
    fig = figure(2.3 * len(snapshots), 2.6)
    axes = fig.subplots(1, len(snapshots), squeeze=False)[0]
    for ax, snap in zip(axes, snapshots):
        ax.scatter(*x[labels == 1].T, s=6, c="tab:red")
        ax.scatter(*x[labels == 0].T, s=6, c="tab:blue")
        _boundary(ax, *true_line, color="0.6", ls="--", lw=1)
        _boundary(ax, snap["w"], snap["b"], color="k", lw=1.5)
        if snap.get("point") is not None:
            ax.scatter(*snap["point"], s=60, facecolors="none", edgecolors="k")
        ax.set(xlim=(-1.1, 1.1), ylim=(-1.1, 1.1), xticks=[], yticks=[], aspect="equal",
               title=f"after mistake {snap['mistake']}" if snap["mistake"] else "converged")
    fig.suptitle("Perceptron on a separable set: boundary (black) vs the true line (grey)")
    return save(fig, path)


def plot_mistakes(per_epoch, bound, path: Path) -> Path:
    """Mistakes per epoch and their running total against Novikoff's bound (R/γ)²."""
    fig = figure(6, 3.2)
    ax = fig.subplots()
    epochs = np.arange(1, len(per_epoch) + 1)
    ax.bar(epochs, per_epoch, color="tab:blue", label="mistakes in the epoch")
    ax.plot(epochs, np.cumsum(per_epoch), "k.-", label="total so far")
    ax.axhline(bound, color="tab:red", ls="--", label=f"Novikoff bound (R/γ)² = {bound:.0f}")
    ax.set(xlabel="epoch", ylabel="mistakes", yscale="symlog")
    ax.legend(fontsize=8)
    return save(fig, path)


def plot_xor(errors_per_epoch, weights, grid, probs, path: Path) -> Path:
    """Left: the perceptron's errors per epoch on XOR. Middle: its (w1, w2, b) before each sample.
    Right: P(class 1) of the two-layer net over the unit square, the four points on top."""
    fig = figure(12, 3.4)
    ax_err, ax_w, ax_net = fig.subplots(1, 3)
    epochs = np.arange(1, len(errors_per_epoch) + 1)
    ax_err.step(epochs, errors_per_epoch, where="mid")
    ax_err.set(xlabel="epoch", ylabel="errors (of 4)", ylim=(-0.2, 4.2),
               title="Perceptron on XOR: never 0")
    for j, name in enumerate(("w1", "w2", "b")):
        ax_w.plot(np.arange(len(weights)), weights[:, j], ".-", label=name)
    ax_w.set(xlabel="sample presented", title="its weights cycle")
    ax_w.legend(fontsize=8)
    im = ax_net.imshow(probs, origin="lower", extent=(grid[0], grid[-1], grid[0], grid[-1]),
                       cmap="RdBu_r", vmin=0, vmax=1)
    pts = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    ax_net.scatter(*pts.T, c=["tab:blue", "tab:red", "tab:red", "tab:blue"], edgecolors="k", s=80)
    ax_net.set(title="two-layer net by backprop: solved")
    fig.colorbar(im, ax=ax_net, shrink=0.8)
    return save(fig, path)


def plot_templates(w_plain, w_avg, path: Path) -> Path:
    """The ten one-vs-rest weight vectors as 28×28 images: plain (top) and averaged (bottom)."""
    fig = figure(12, 3.0)
    sub = fig.subfigures(2, 1)
    for sf, w, name in ((sub[0], w_plain, "plain"), (sub[1], w_avg, "averaged")):
        image_grid(sf, np.asarray(w).T.reshape(-1, 28, 28), 10, titles=[f"{name} {j}" for j in range(10)])
    return save(fig, path)


def plot_runs(runs: dict, path: Path) -> Path:
    """Test accuracy against epoch for each MNIST run: {name: metrics rows}."""
    fig = figure(6.5, 3.6)
    ax = fig.subplots()
    for name, rows in runs.items():
        for key, style in (("test_acc", "-"), ("test_acc_averaged", "--")):
            if rows and key in rows[0]:
                label = name + (" (averaged)" if key.endswith("averaged") else "")
                ax.plot([r["epoch"] for r in rows], [100 * r[key] for r in rows], style, marker=".",
                        label=label)
    ax.set(xlabel="epoch", ylabel="test accuracy (%)", title="MNIST, ten one-vs-rest units")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


__all__ = ["plot_boundary_strip", "plot_mistakes", "plot_runs", "plot_templates", "plot_xor"]
