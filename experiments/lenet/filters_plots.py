"""Figures for experiments.lenet.filters: each function takes NumPy arrays and writes one PNG.

Figures are `matplotlib.figure.Figure` objects on an Agg canvas (no pyplot, no global backend).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

__all__ = ["plot_conv1_on_curve", "plot_curve_filter", "plot_edges_vs_learned", "plot_extremes",
           "plot_slide", "slide_positions"]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    fig.clear()
    return path


def _image(ax, a, title=None, cmap="gray_r", symmetric=False, **kw):
    if symmetric:
        lim = float(np.abs(a).max()) or 1.0
        kw.update(vmin=-lim, vmax=lim)
    im = ax.imshow(a, cmap=cmap, interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return im


def plot_curve_filter(filt: np.ndarray, path: Path) -> Path:
    """The (k, k) filter as a pixel grid with its values written in, and its nonzero taps as a curve."""
    fig = _figure(7, 3.4)
    ax_px, ax_curve = fig.subplots(1, 2)
    _image(ax_px, filt, "curve detector: pixel values")
    for (i, j), v in np.ndenumerate(filt):
        ax_px.text(j, i, f"{v:g}", ha="center", va="center", fontsize=8,
                   color="white" if v > filt.max() / 2 else "black")
    rows, cols = np.nonzero(filt)
    order = np.argsort(-rows)  # bottom to top
    ax_curve.plot(cols[order], rows[order], "-o", color="tab:red", lw=3)
    ax_curve.set_xlim(-0.5, filt.shape[1] - 0.5)
    ax_curve.set_ylim(filt.shape[0] - 0.5, -0.5)
    ax_curve.set_aspect("equal")
    ax_curve.set_xticks(range(filt.shape[1]))
    ax_curve.set_yticks(range(filt.shape[0]))
    ax_curve.grid(True, lw=0.5)
    ax_curve.set_title("as a curve (weight 30 on each point)", fontsize=8)
    return _save(fig, path)


def slide_positions(shape: tuple[int, int], argmax: tuple[int, int], n: int = 6) -> list[tuple[int, int]]:
    """n window positions in raster order, evenly spaced, one of them replaced by the argmax."""
    flat = np.linspace(0, shape[0] * shape[1] - 1, n).round().astype(int)
    best = argmax[0] * shape[1] + argmax[1]
    flat[np.argmin(np.abs(flat - best))] = best
    return [tuple(int(v) for v in np.unravel_index(k, shape)) for k in np.sort(flat)]


def plot_slide(image: np.ndarray, amap: np.ndarray, filt: np.ndarray, path: Path) -> Path:
    """A strip of window positions: the digit with the window, the window's pixels × weights and
    their sum, and the activation map filled in up to that position (raster order)."""
    ksize = filt.shape
    argmax = np.unravel_index(int(amap.argmax()), amap.shape)
    positions = slide_positions(amap.shape, argmax)
    fig = _figure(2.0 * len(positions), 6.2)
    axes = fig.subplots(3, len(positions))
    vmax = float(amap.max()) or 1.0
    for c, (i, j) in enumerate(positions):
        _image(axes[0, c], image, f"window at ({i}, {j})")
        axes[0, c].add_patch(Rectangle((j - 0.5, i - 0.5), ksize[1], ksize[0], fill=False,
                                       ec="tab:red", lw=2))
        patch = image[i:i + ksize[0], j:j + ksize[1]]
        _image(axes[1, c], patch * filt, f"pixels × weights: Σ = {amap[i, j]:.1f}", cmap="magma",
               vmin=0, vmax=float(np.max(filt)))
        shown = np.full(amap.shape, np.nan)
        k = i * amap.shape[1] + j
        shown.ravel()[:k + 1] = amap.ravel()[:k + 1]
        _image(axes[2, c], shown, "activation map so far", cmap="viridis", vmin=0, vmax=vmax)
        axes[2, c].add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="tab:red", lw=1.5))
    fig.suptitle(f"curve detector slid over a test digit (max {vmax:.1f} at {tuple(int(v) for v in argmax)})",
                 fontsize=10)
    return _save(fig, path)


def plot_extremes(pixels, cosine, labels, most, least, score, peak, path: Path) -> Path:
    """Two rows of test digits: those whose best window is most like the filter, and least."""
    fig = _figure(1.3 * len(most), 3.4)
    axes = fig.subplots(2, len(most))
    for row, (name, idx) in enumerate((("most", most), ("least", least))):
        for c, n in enumerate(idx):
            _image(axes[row, c], pixels[n], f"{labels[n]} · cos {score[n]:.2f}\nraw {peak[n]:.0f}")
            i, j = np.unravel_index(int(cosine[n].argmax()), cosine[n].shape)
            axes[row, c].add_patch(Rectangle((j - 0.5, i - 0.5), 7, 7, fill=False, ec="tab:red", lw=1))
        axes[row, 0].set_ylabel(f"respond {name}", fontsize=8)
    fig.suptitle("test digits by the curve detector's peak normalised response (label · cosine · raw "
                 "peak of 180; box at the peak)", fontsize=9)
    return _save(fig, path)


def plot_edges_vs_learned(edges: dict, conv1: np.ndarray, corr: np.ndarray, matches: list[dict],
                          path: Path) -> Path:
    """Hand-set edge detectors (top), learned conv1 filters with their best match (middle), and
    the correlation matrix (bottom)."""
    k = conv1.shape[-1]
    cols = max(k, len(edges))
    fig = _figure(1.5 * cols, 6.0)
    grid = fig.add_gridspec(3, cols, height_ratios=[1, 1, 1.4])
    for c, (name, f) in enumerate(edges.items()):
        _image(fig.add_subplot(grid[0, c]), f, f"hand-set: {name}", cmap="RdBu_r", symmetric=True)
    for c in range(k):
        m = matches[c]
        _image(fig.add_subplot(grid[1, c]), conv1[:, :, 0, c],
               f"conv1 #{c}\n≈ {m['best']} (r={m['r']:+.2f})", cmap="RdBu_r", symmetric=True)
    ax = fig.add_subplot(grid[2, :])
    im = ax.imshow(corr.T, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_yticks(range(len(edges)), list(edges), fontsize=8)
    ax.set_xticks(range(k), [f"conv1 #{c}" for c in range(k)], fontsize=8)
    for (i, j), v in np.ndenumerate(corr):
        ax.text(i, j, f"{v:+.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, shrink=0.8, label="Pearson r")
    return _save(fig, path)


def plot_conv1_on_curve(stimulus: np.ndarray, responses: np.ndarray, blank: np.ndarray,
                        path: Path) -> Path:
    """The preferred stimulus, each conv1 map's response to it minus its response to a blank
    image (zoomed on the stimulus), and each filter's peak of that difference."""
    k = responses.shape[-1]
    rows, cols = np.nonzero(stimulus)
    box = (slice(max(rows.min() - 4, 0), rows.max() + 5), slice(max(cols.min() - 4, 0), cols.max() + 5))
    stimulus, responses, blank = stimulus[box], responses[box], blank[box]   # zoom on the stimulus
    fig = _figure(1.7 * (k + 2), 2.6)
    axes = fig.subplots(1, k + 2, width_ratios=[1] * (k + 1) + [1.6])
    _image(axes[0], stimulus, "preferred stimulus")
    diff = responses - blank
    lim = float(np.abs(diff).max()) or 1.0
    for c in range(k):
        _image(axes[c + 1], diff[..., c], f"conv1 #{c}\npeak {diff[..., c].max():+.2f}",
               cmap="RdBu_r", vmin=-lim, vmax=lim)
    axes[-1].bar(range(k), diff.reshape(-1, k).max(axis=0), color="tab:blue")
    axes[-1].set_xticks(range(k))
    axes[-1].set_title("peak response − blank", fontsize=8)
    return _save(fig, path)
