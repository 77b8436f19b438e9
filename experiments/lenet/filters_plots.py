"""Figures for experiments.lenet.filters: each function takes NumPy arrays and writes one PNG.

Figures are `matplotlib.figure.Figure` objects on an Agg canvas (no pyplot, no global backend).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from experiments.common.loop import save_figure
from experiments.common.plots import integer_ticks, signed_image

__all__ = ["plot_conv1_on_curve", "plot_curve_filter", "plot_edges_vs_learned", "plot_extremes",
           "plot_slide", "slide_positions"]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=110)
    fig.clear()
    return path


def _image(ax, a, title=None, cmap="gray_r", symmetric=False, **kw):
    if symmetric:
        im = signed_image(ax, a, kw.pop("lim", None), **kw)
    else:
        im = ax.imshow(a, cmap=cmap, interpolation="nearest", **kw)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)
    return im


def plot_curve_filter(filt: np.ndarray, path: Path, title: str | None = None) -> Path:
    """The (k, k) filter as a pixel grid with its values written in (colour bar: weight), and its
    nonzero taps as a curve."""
    fig = _figure(7.6, 3.6)
    ax_px, ax_curve = fig.subplots(1, 2)
    im = _image(ax_px, filt, "curve detector: weights", vmin=0, vmax=float(filt.max()) or 1.0)
    fig.colorbar(im, ax=ax_px, shrink=0.8, label="weight")
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
    ax_curve.set(xlabel="column (px)", ylabel="row (px)")
    taps = filt[filt != 0]
    weight = f"weight {taps[0]:g} on each point" if taps.size and np.all(taps == taps[0]) else "nonzero taps"
    ax_curve.set_title(f"as a curve ({weight})", fontsize=8)
    fig.suptitle(title or f"A hand-set {filt.shape[0]}×{filt.shape[1]} curve detector", fontsize=10)
    return _save(fig, path)


def slide_positions(shape: tuple[int, int], argmax: tuple[int, int], n: int = 6) -> list[tuple[int, int]]:
    """n window positions in raster order, evenly spaced, one of them replaced by the argmax."""
    flat = np.linspace(0, shape[0] * shape[1] - 1, n).round().astype(int)
    best = argmax[0] * shape[1] + argmax[1]
    flat[np.argmin(np.abs(flat - best))] = best
    return [tuple(int(v) for v in np.unravel_index(k, shape)) for k in np.sort(flat)]


def plot_slide(image: np.ndarray, amap: np.ndarray, filt: np.ndarray, path: Path,
               title: str | None = None) -> Path:
    """A strip of window positions: the digit with the window, the window's pixels × weights and
    their sum, and the activation map filled in up to that position (raster order). The two
    coloured rows end in their colour bars (pixel × weight; activation)."""
    ksize = filt.shape
    argmax = np.unravel_index(int(amap.argmax()), amap.shape)
    positions = slide_positions(amap.shape, argmax)
    fig = _figure(2.0 * len(positions) + 1.0, 6.4)
    axes = fig.subplots(3, len(positions))
    vmax = float(amap.max()) or 1.0
    for c, (i, j) in enumerate(positions):
        _image(axes[0, c], image, f"window at ({i}, {j})")
        axes[0, c].add_patch(Rectangle((j - 0.5, i - 0.5), ksize[1], ksize[0], fill=False,
                                       ec="tab:red", lw=2))
        patch = image[i:i + ksize[0], j:j + ksize[1]]
        im_prod = _image(axes[1, c], patch * filt, f"pixels × weights: Σ = {amap[i, j]:.1f}",
                         cmap="magma", vmin=0, vmax=float(np.max(filt)))
        shown = np.full(amap.shape, np.nan)
        k = i * amap.shape[1] + j
        shown.ravel()[:k + 1] = amap.ravel()[:k + 1]
        im_map = _image(axes[2, c], shown, "activation map so far", cmap="viridis", vmin=0, vmax=vmax)
        axes[2, c].add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="tab:red", lw=1.5))
    fig.colorbar(im_prod, ax=axes[1, :], shrink=0.9, label="pixel × weight")
    fig.colorbar(im_map, ax=axes[2, :], shrink=0.9, label="activation (Σ)")
    head = f"{title}: " if title else ""
    fig.suptitle(f"{head}curve detector slid over a test digit (max {vmax:.1f} at "
                 f"{tuple(int(v) for v in argmax)}; red box: the {ksize[0]}×{ksize[1]} window)",
                 fontsize=10)
    return _save(fig, path)


def plot_extremes(pixels, cosine, labels, most, least, score, peak, path: Path,
                  raw_max: float | None = None, window: int = 7, title: str | None = None) -> Path:
    """Two rows of test digits ranked by the best cosine between the filter and a window (the
    normalised response): highest and lowest. The raw peak is written under each: the lowest
    cosine is not the lowest raw response (a thick stroke covers every tap and saturates it).
    raw_max: the largest raw response possible (sum of the weights × 1), for the titles."""
    fig = _figure(1.3 * len(most), 3.8)
    axes = fig.subplots(2, len(most))
    of = f"/{raw_max:.0f}" if raw_max else ""
    for row, (name, idx) in enumerate((("highest cosine", most), ("lowest cosine", least))):
        for c, n in enumerate(idx):
            _image(axes[row, c], pixels[n], f"{labels[n]} · cos {score[n]:.2f}\nraw peak {peak[n]:.0f}{of}")
            i, j = np.unravel_index(int(cosine[n].argmax()), cosine[n].shape)
            axes[row, c].add_patch(Rectangle((j - 0.5, i - 0.5), window, window, fill=False,
                                             ec="tab:red", lw=1))
        axes[row, 0].set_ylabel(name, fontsize=8)
    low_raw = float(np.median([peak[n] for n in least]))
    head = f"{title}\n" if title else ""
    fig.suptitle(f"{head}Test digits ranked by the curve detector's best cosine (label · cosine · raw "
                 f"peak; red box: the best window). Lowest cosine ≠ weakest response: their median "
                 f"raw peak is {low_raw:.0f}{of}", fontsize=9)
    return _save(fig, path)


def plot_edges_vs_learned(edges: dict, conv1: np.ndarray, corr: np.ndarray, matches: list[dict],
                          path: Path, title: str | None = None) -> Path:
    """Hand-set edge detectors (top), learned conv1 filters with their best match (middle), and
    the correlation matrix (bottom). Each filter row shares one diverging scale centred on 0 and
    ends in its colour bar."""
    k = conv1.shape[-1]
    cols = max(k, len(edges))
    fig = _figure(1.5 * cols + 1.2, 6.8)
    top, middle, bottom = fig.subfigures(3, 1, height_ratios=[1, 1.1, 1.5])
    lim = max(float(np.abs(f).max()) for f in edges.values()) or 1.0
    row = top.subplots(1, cols, squeeze=False)[0]
    for ax, (name, f) in zip(row, edges.items()):
        im = _image(ax, f, f"hand-set: {name}", symmetric=True, lim=lim)
    for ax in row[len(edges):]:
        ax.set_axis_off()
    top.colorbar(im, ax=row, shrink=0.9, label="weight")
    lim = float(np.abs(conv1[:, :, 0, :]).max()) or 1.0
    row = middle.subplots(1, cols, squeeze=False)[0]
    for c, ax in enumerate(row[:k]):
        m = matches[c]
        im = _image(ax, conv1[:, :, 0, c], f"conv1 #{c}\n≈ {m['best']} (r={m['r']:+.2f})",
                    symmetric=True, lim=lim)
    for ax in row[k:]:
        ax.set_axis_off()
    middle.colorbar(im, ax=row, shrink=0.9, label="weight")
    ax = bottom.subplots()
    im = ax.imshow(corr.T, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_yticks(range(len(edges)), list(edges), fontsize=8)
    ax.set_xticks(range(k), [f"conv1 #{c}" for c in range(k)], fontsize=8)
    for (i, j), v in np.ndenumerate(corr):
        ax.text(i, j, f"{v:+.2f}", ha="center", va="center", fontsize=7)
    bottom.colorbar(im, ax=ax, shrink=0.9, label="Pearson r")
    ax.set_title("correlation of each learned filter with each hand-set one", fontsize=8)
    fig.suptitle(title or "Learned conv1 filters against hand-set edge detectors", fontsize=10)
    return _save(fig, path)


def plot_conv1_on_curve(stimulus: np.ndarray, responses: np.ndarray, blank: np.ndarray,
                        path: Path, title: str | None = None) -> Path:
    """The preferred stimulus, each conv1 map's response to it minus its response to a blank
    image (zoomed on the stimulus; one diverging scale centred on 0, with its colour bar), and
    each filter's largest value of that difference, max(response − blank)."""
    k = responses.shape[-1]
    rows, cols = np.nonzero(stimulus)
    box = (slice(max(rows.min() - 4, 0), rows.max() + 5), slice(max(cols.min() - 4, 0), cols.max() + 5))
    stimulus, responses, blank = stimulus[box], responses[box], blank[box]   # zoom on the stimulus
    fig = _figure(1.7 * (k + 2) + 1.4, 3.2)
    axes = fig.subplots(1, k + 2, width_ratios=[1] * (k + 1) + [1.6])
    _image(axes[0], stimulus, "preferred stimulus")
    diff = responses - blank
    lim = float(np.abs(diff).max()) or 1.0
    for c in range(k):
        im = _image(axes[c + 1], diff[..., c], f"conv1 #{c}\nmax {diff[..., c].max():+.2f}",
                    symmetric=True, lim=lim)
    fig.colorbar(im, ax=list(axes[1:k + 1]), shrink=0.8, label="response − blank (0 white)")
    axes[-1].bar(range(k), diff.reshape(-1, k).max(axis=0), color="tab:blue")
    axes[-1].axhline(0, color="k", lw=0.6)
    integer_ticks(axes[-1], "x", range(k))
    axes[-1].set(xlabel="conv1 filter", ylabel="max(response − blank)")
    axes[-1].yaxis.set_label_position("right")  # away from the colour bar's label
    axes[-1].yaxis.tick_right()
    axes[-1].set_title("largest response − blank response", fontsize=8)
    fig.suptitle(title or "Learned conv1 maps on the curve detector's preferred stimulus "
                 "(response minus the response to a blank image)", fontsize=10)
    return _save(fig, path)
