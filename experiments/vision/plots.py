"""Figures for experiments.vision.visual_hierarchy: each function takes NumPy arrays and writes one PNG.

`arrays` is {network: {layer label: {"tuning": physiology.Tuning, "bars": (U, O), "signed":
(U, H, W), "mass": (U, H, W), "box": ((row0, row1), (col0, col1))}}}; `refs` is the same
{label: ...} for the hand-built simple and complex cell. Figures are `Figure`s on an Agg
canvas (no pyplot).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from experiments.common.loop import save_figure
from experiments.common.plots import integer_ticks, run_title

__all__ = ["plot_f1f0", "plot_orientation", "plot_receptive_fields", "plot_rf_sizes",
           "plot_stimuli", "plot_tuning_curves"]

RATIO_MAX = 2.0  # F1/F0 histograms end here; larger ratios (a linear unit's is infinite) pile up in the last bin


def _figure(width, height) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=80)
    fig.clear()
    return path


def plot_stimuli(gratings, bars, protocol, path, seed: int | None = None) -> Path:
    """Gratings (rows: spatial frequency, columns: orientations), one drift cycle, and bars."""
    n_f, n_o, t = len(gratings.frequencies), len(gratings.orientations), gratings.steps
    imgs = gratings.images[..., 0].reshape(n_f, n_o, t, *gratings.images.shape[1:3])
    cols = list(range(0, n_o, max(n_o // 6, 1)))[:6]
    fig = _figure(1.3 * len(cols) + 1.2, 1.3 * (n_f + 2) + 0.5)
    axes = fig.subplots(n_f + 2, len(cols), squeeze=False)
    lim = float(np.abs(gratings.images).max())
    for i in range(n_f):
        for j, o in enumerate(cols):
            im = axes[i, j].imshow(imgs[i, o, 0], cmap="gray", vmin=-lim, vmax=lim)
            axes[i, j].set_title(f"{gratings.orientations[o]:.0f}°, λ={1 / gratings.frequencies[i]:.0f} px",
                                 fontsize=7)
    frames = np.linspace(0, t - 1, len(cols)).round().astype(int)
    for j, k in enumerate(frames):
        axes[n_f, j].imshow(imgs[n_f // 2, cols[1 % len(cols)], k], cmap="gray", vmin=-lim, vmax=lim)
        axes[n_f, j].set_title(f"frame {k}/{t}, φ={360 * k / t:.0f}°", fontsize=7)
    bars = bars[..., 0].reshape(n_o, -1, *bars.shape[1:3])
    for j, o in enumerate(cols):
        axes[n_f + 1, j].imshow(bars[o, bars.shape[1] // 2], cmap="gray", vmin=-lim, vmax=lim)
        axes[n_f + 1, j].set_title(f"bar {gratings.orientations[o]:.0f}°", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.5, label="model input (L - mean)/std")
    fig.suptitle(run_title("Visual hierarchy", None, "stimuli: drifting gratings (contrast 1) and bars "
                                                    "(ink on black), 28×28 px"))
    return _save(fig, path)


def _examples(t, n=2) -> list[int]:
    """The most and the median orientation-selective responsive units."""
    ok = np.flatnonzero(t.responsive & np.isfinite(t.osi))
    if not len(ok):
        return []
    order = ok[np.argsort(-t.osi[ok])]
    return list(dict.fromkeys([int(order[0]), int(order[len(order) // 2])]))[:n]


def plot_tuning_curves(arrays, refs, protocol, path, seed: int | None = None) -> Path:
    """Orientation tuning (gratings: solid, bars: dashed, each scaled to its peak) of example
    units, one panel per layer and network, the reference cells in the last row."""
    groups = [*arrays.items(), ("reference", refs)]
    ncol = max(len(g) for _, g in groups)
    fig = _figure(2.6 * ncol, 2.2 * len(groups))
    axes = fig.subplots(len(groups), ncol, squeeze=False)
    theta = np.asarray(protocol["orientations"])
    for row, (network, layers) in zip(axes, groups):
        for ax, (label, a) in zip(row, layers.items()):
            t = a["tuning"]
            for k, u in enumerate(_examples(t)):
                c = f"C{k}"
                ax.plot(theta, t.tuning[u] / t.tuning[u].max(), "-o", ms=3, color=c,
                        label=f"ch {u}: OSI {t.osi[u]:.2f}, F1/F0 {min(t.f1f0[u], 99):.2f}")
                b = a["bars"][u]
                if b.max() > 0:
                    ax.plot(theta, b / b.max(), "--", color=c, lw=1)
            ax.set(title=f"{network} {label}", xlabel="orientation (deg)", ylabel="response / peak",
                   ylim=(-0.05, 1.35), xticks=theta[::3])
            ax.legend(fontsize=6, loc="upper right")
        for ax in row[len(layers):]:
            ax.set_axis_off()
    fig.legend([Line2D([], [], color="k"), Line2D([], [], color="k", ls="--")],
               ["drifting grating (F0 rise + F1)", "bar (max over positions)"], loc="outside lower center",
               ncol=2, fontsize=8)
    fig.suptitle(run_title("Visual hierarchy", seed, "orientation tuning of example units (most and "
                                                    "median selective)"))
    return _save(fig, path)


def plot_f1f0(arrays, refs, path, seed: int | None = None) -> Path:
    """Histograms of F1/F0 per layer in the style of Skottun et al. (1991), the line at 1
    dividing simple (> 1) from complex (< 1) cells; the reference cells as marks."""
    groups = list(arrays.items())
    ncol = max(len(g) for _, g in groups)
    fig = _figure(3.0 * ncol, 2.4 * len(groups) + 0.5)
    axes = fig.subplots(len(groups), ncol, squeeze=False)
    bins = np.linspace(0, RATIO_MAX, 11)
    for row, (network, layers) in zip(axes, groups):
        for ax, (label, a) in zip(row, layers.items()):
            t = a["tuning"]
            ratio = np.minimum(t.f1f0[t.responsive], RATIO_MAX - 1e-9)
            ax.hist(ratio, bins=bins, color="0.55", edgecolor="k", label=f"units (n={len(ratio)})")
            ax.axvline(1.0, color="C3", lw=1.5, label="F1/F0 = 1")
            for k, (name, r) in enumerate(refs.items()):
                ax.axvline(min(float(r["tuning"].f1f0[0]), RATIO_MAX), color=f"C{k}", ls=":",
                           label=f"{name} cell")
            simple = np.mean(ratio > 1) if len(ratio) else np.nan
            ax.set(title=f"{network} {label}: {100 * simple:.0f}% simple", xlabel="F1/F0 (last bin ≥ 2)",
                   ylabel="units")
            integer_ticks(ax, "y")
            ax.legend(fontsize=6)
        for ax in row[len(layers):]:
            ax.set_axis_off()
    fig.suptitle(run_title("Visual hierarchy", seed, "modulation ratio F1/F0 to the optimal drifting "
                                                    "grating, per layer"))
    return _save(fig, path)


def plot_orientation(arrays, path, seed: int | None = None) -> Path:
    """Per network and layer: the preferred orientations (histogram) and the OSIs (histogram)."""
    groups = list(arrays.items())
    ncol = max(len(g) for _, g in groups)
    fig = _figure(2.3 * ncol, 2.0 * 2 * len(groups))
    axes = fig.subplots(2 * len(groups), ncol, squeeze=False)
    for g, (network, layers) in enumerate(groups):
        for j, (label, a) in enumerate(layers.items()):
            t = a["tuning"]
            ok = t.responsive
            step = float(np.diff(t.preferred_orientation[:0].tolist() + [0, 15])[-1])
            ax = axes[2 * g, j]
            ax.hist(t.preferred_orientation[ok], bins=np.arange(-step / 2, 180, step), color="C0",
                    edgecolor="k", label="preferred")
            ax.set(title=f"{network} {label}", xlabel="preferred orientation (deg)", ylabel="units",
                   xticks=[0, 45, 90, 135])
            integer_ticks(ax, "y")
            ax.legend(fontsize=6)
            ax = axes[2 * g + 1, j]
            ax.hist(t.osi[ok], bins=np.linspace(0, 1, 11), color="C2", edgecolor="k",
                    label=f"median {np.nanmedian(t.osi[ok]):.2f}" if ok.any() else "none")
            ax.set(xlabel="OSI = |Σ R·exp(2iθ)| / Σ R", ylabel="units", xlim=(0, 1))
            integer_ticks(ax, "y")
            ax.legend(fontsize=6)
        for j in range(len(layers), ncol):
            axes[2 * g, j].set_axis_off()
            axes[2 * g + 1, j].set_axis_off()
    fig.suptitle(run_title("Visual hierarchy", seed, "orientation preference and selectivity per layer "
                                                    "(responsive units)"))
    return _save(fig, path)


def plot_receptive_fields(arrays, refs, path, seed: int | None = None) -> Path:
    """Effective receptive field (mean |∂r/∂x| over digits, averaged over the layer's units,
    each scaled to sum 1) with the theoretical field's square, per layer; the reference
    cells' signed mean gradients (diverging map centred on 0)."""
    groups = list(arrays.items())
    ncol = max(max(len(g) for _, g in groups), len(refs))
    fig = _figure(3.2 * ncol, 2.9 * (len(groups) + 1))
    axes = fig.subplots(len(groups) + 1, ncol, squeeze=False)
    for row, (network, layers) in zip(axes, groups):
        for ax, (label, a) in zip(row, layers.items()):
            ok = a["tuning"].responsive
            mass = a["mass"] / np.maximum(a["mass"].sum((1, 2), keepdims=True), 1e-30)
            pooled = mass[ok].mean(0) if ok.any() else mass.mean(0)
            im = ax.imshow(pooled, cmap="magma", interpolation="nearest")
            _square(ax, a["box"], "C2", "theoretical")
            ax.set(title=f"{network} {label}", xlabel="x (px)", ylabel="y (px)")
            fig.colorbar(im, ax=ax, shrink=0.7, label="share of |∂r/∂x|")
            ax.legend(fontsize=6, loc="lower right")
        for ax in row[len(layers):]:
            ax.set_axis_off()
    for ax, (label, a) in zip(axes[-1], refs.items()):
        g = a["signed"][0]
        lim = float(np.abs(g).max()) or 1.0
        im = ax.imshow(g, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        _square(ax, a["box"], "k", "theoretical")
        ax.set(title=f"{label} cell: mean ∂r/∂x", xlabel="x (px)", ylabel="y (px)")
        fig.colorbar(im, ax=ax, shrink=0.7, label="∂r/∂x")
        ax.legend(fontsize=6, loc="lower right")
    for ax in axes[-1][len(refs):]:
        ax.set_axis_off()
    fig.suptitle(run_title("Visual hierarchy", seed, "receptive fields: effective map (gradient to the "
                                                    "pixels) and theoretical square"))
    return _save(fig, path)


def _square(ax, box, color, label):
    (r0, r1), (c0, c1) = box
    ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False, ec=color,
                           lw=1.5, label=f"{label} {r1 - r0 + 1} px"))


def plot_rf_sizes(networks, path, seed: int | None = None) -> Path:
    """Theoretical and effective (95 % of |∂r/∂x|) receptive field side per layer."""
    fig = _figure(5, 3.5)
    ax = fig.subplots()
    for k, (network, layers) in enumerate(networks.items()):
        labels = list(layers)
        x = np.arange(len(labels))
        ax.plot(x, [layers[name]["theoretical_rf"] for name in labels], "-o", color=f"C{k}",
                label=f"{network}: theoretical")
        ax.plot(x, [layers[name]["effective_rf"] for name in labels], "--s", color=f"C{k}",
                label=f"{network}: effective (95 %)")
        ax.set_xticks(x, labels)
    ax.set(xlabel="layer", ylabel="receptive field side (px)",
           title=run_title("Visual hierarchy", seed, "receptive field size"))
    integer_ticks(ax, "y")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)
