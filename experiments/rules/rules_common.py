"""What the learning-rule experiments (perceptron, hebbian) share: flat MNIST, the batches,
the summary file, and a headless figure.

Real MNIST comes from --data-dir, else $JAXNN_DATA_DIR, else the download cache (see
`jaxnn.data`). A missing or corrupt file becomes one line on stderr via `cli_main`.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from experiments.common.loop import UsageError, machine, save_figure, write_atomic
from jaxnn import data as jdata


def flat_mnist(split: str, data_dir=None, subset: int | None = None):
    """(x (N, 784) float32 pixels / 255, labels (N,) int32), the first `subset` if given."""
    images, labels = jdata.load("mnist", split, data_dir=data_dir)
    if subset is not None:
        images, labels = images[:subset], labels[:subset]
    return (images.reshape(len(images), -1) / np.float32(255)).astype(np.float32), labels.astype(np.int32)


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order of the n training samples in an epoch: a function of (seed, epoch) only."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def epoch_batches(seed: int, size: int, *arrays):
    """batches(epoch) for the shared loop: the arrays (same length N) in `epoch_order`, cut into
    N // size batches of `size` (the ragged rest dropped, so the step compiles once)."""
    n = len(arrays[0])

    def batches(epoch):
        order = epoch_order(seed, epoch, n)[:n - n % size]
        return [tuple(jnp.asarray(a[i]) for a in arrays) for i in np.split(order, n // size)]

    return batches


def check_positive(**values) -> None:
    """UsageError naming the first flag whose value is not a positive number."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not value > 0):
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {value!r}")


def write_summary(out: Path, summary: dict, started: float) -> dict:
    """Add the wall time and the machine (with its load) and write out/summary.json."""
    summary = {**summary, "seconds_total": time.perf_counter() - started, "machine": machine(),
               "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=float) + "\n")
    return summary


def figure(width: float, height: float) -> Figure:
    """A matplotlib Figure on its own Agg canvas (no pyplot, no global backend)."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig: Figure, path: Path, dpi: int = 110) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, dpi=dpi)
    fig.clear()
    return path


def image_grid(fig: Figure, images: np.ndarray, ncols: int, titles=None, symmetric: bool = True):
    """Draw images (K, H, W) on a grid of axes; a shared colour scale symmetric around 0."""
    k = len(images)
    nrows = -(-k // ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    lim = float(np.abs(images).max()) or 1.0
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < k:
            kw = dict(cmap="RdBu_r", vmin=-lim, vmax=lim) if symmetric else dict(cmap="gray_r")
            ax.imshow(images[i], interpolation="nearest", **kw)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    return axes


__all__ = ["check_positive", "epoch_batches", "epoch_order", "figure", "flat_mnist", "image_grid",
           "save", "write_summary"]
