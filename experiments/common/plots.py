"""Headless plots for the LeNet-5-on-MNIST experiment.

Everything takes plain NumPy arrays (``np.asarray`` is applied, so jax arrays work too)
and writes one PNG. Figures are built with ``matplotlib.figure.Figure`` on an Agg canvas
rather than through pyplot, so importing this module never touches the global backend
and no figure is left registered in pyplot's figure manager.

Each ``plot_*`` function creates the parent directories of ``path``, saves, closes the
figure and returns ``pathlib.Path(path)``.
"""
import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

_MAX_MAPS = 16  # feature maps shown per layer in plot_activations


def _figure(width, height, grid=None):
    """A figure on an Agg canvas. grid=(left, bottom, right, top, wspace, hspace): fixed margins
    for a grid of images without axes, instead of the constrained layout, which measures every
    axis's decorations and takes about a second per figure of a hundred panels."""
    fig = Figure(figsize=(width, height), layout="constrained" if grid is None else None)
    if grid is not None:
        left, bottom, right, top, wspace, hspace = grid
        fig.subplots_adjust(left=left, bottom=bottom, right=right, top=top, wspace=wspace,
                            hspace=hspace)
    FigureCanvasAgg(fig)  # attach an Agg canvas explicitly: no dependence on the default backend
    return fig


def _save(fig, path, dpi=120):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    fig.clear()  # "close": the figure is not tracked by pyplot, so clearing it releases its artists
    return path


def _symmetric_limit(a):
    """Half-width of a colour range centred on 0; never 0, so an all-zero array still renders."""
    return float(np.max(np.abs(a), initial=0.0)) or 1.0


def confusion_matrix(labels, preds, num_classes=10):
    """Counts of (true, predicted) pairs.

    labels, preds: (N,) ints in [0, num_classes). Returns (K, K) int64 with rows = true class
    and columns = predicted class.
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    preds = np.asarray(preds).astype(np.int64).ravel()
    if labels.shape != preds.shape:
        raise ValueError(f"labels {labels.shape} and preds {preds.shape} differ in length")
    k = int(num_classes)
    # Out-of-range ids would silently land in a wrong cell (or grow bincount), so reject them.
    for name, a in (("labels", labels), ("preds", preds)):
        if a.size and (a.min() < 0 or a.max() >= k):
            raise ValueError(f"{name} must lie in [0, {k}); got range [{a.min()}, {a.max()}]")
    return np.bincount(labels * k + preds, minlength=k * k).reshape(k, k).astype(np.int64)


def plot_curves(rows, path):
    """Loss and accuracy against epoch.

    rows: list of dicts with ``epoch``, ``train_loss``, ``train_acc``, ``test_acc``
    (accuracies as fractions in [0, 1]) and optionally ``test_loss``. Left panel: loss;
    right panel: train/test accuracy in percent.
    """
    if not rows:
        raise ValueError("plot_curves needs at least one row")
    rows = sorted(rows, key=lambda r: r["epoch"])

    def col(key):
        return np.array([r.get(key, np.nan) for r in rows], dtype=np.float64)

    epoch = col("epoch")
    # Markers keep a single epoch (a lone point, no line) visible; past ~30 points they clutter.
    mk = "o" if len(rows) <= 30 else None

    fig = _figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot(epoch, col("train_loss"), marker=mk, label="train")
    test_loss = col("test_loss")
    if np.isfinite(test_loss).any():
        ax_loss.plot(epoch, test_loss, marker=mk, label="test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")

    train_acc, test_acc = 100 * col("train_acc"), 100 * col("test_acc")
    ax_acc.plot(epoch, train_acc, marker=mk, label=f"train (last {train_acc[-1]:.2f}%)")
    ax_acc.plot(epoch, test_acc, marker=mk, label=f"test (last {test_acc[-1]:.2f}%)")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.margins(y=0.12)  # headroom so the legend does not sit on the extreme points
        ax.legend()
        # Whole-number epoch ticks. With one epoch even MaxNLocator(integer=True) falls back to
        # 0.96, 0.98, ..., so few epochs get explicit ticks.
        if len(epoch) <= 12:
            ax.set_xticks(epoch)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, path)


def plot_filters(w, path, title="First-layer filters"):
    """Each output filter of a conv kernel as a small image.

    w: (kh, kw, in, out) HWIO kernel, e.g. (5, 5, 1, 6). For in > 1 each filter is shown as
    the mean over its input channels. All filters share one colour scale symmetric around 0
    (blue negative, red positive), so their magnitudes are comparable; one colorbar.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 4 or w.shape[3] == 0:
        raise ValueError(f"expected an HWIO kernel (kh, kw, in, out>0), got shape {w.shape}")
    kh, kw, cin, cout = w.shape
    maps = w.mean(axis=2)  # (kh, kw, out); identical to w[:, :, 0] when in == 1
    if cin > 1:
        title = f"{title} (mean over {cin} input channels)"
    lim = _symmetric_limit(maps)

    ncols = min(cout, 8)
    nrows = math.ceil(cout / ncols)
    fig = _figure(1.3 * ncols + 1.0, 1.4 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < cout:
            im = ax.imshow(maps[:, :, i], cmap="RdBu_r", vmin=-lim, vmax=lim,
                           interpolation="nearest")
            ax.set_title(f"#{i}", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.suptitle(f"{title}  [{kh}x{kw}, {cout} filters]")
    return _save(fig, path)


def plot_activations(image, activations, path):
    """An input image and what each layer makes of it, one row per layer.

    image: (28, 28) float (a trailing channel axis of 1 is dropped).
    activations: list of (name, array); array is (H, W, C) feature maps, of which the first
    16 are shown, or an (F,) vector, shown as a bar chart. A leading batch axis of 1 is
    dropped. Each layer's maps share one colour scale: diverging around 0 if any value is
    negative (e.g. tanh), otherwise 0..max (e.g. ReLU).
    """
    image = np.asarray(image, dtype=np.float64)
    image = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    layers = []
    for name, a in activations:
        a = np.asarray(a, dtype=np.float64)
        a = a[0] if a.ndim in (2, 4) and a.shape[0] == 1 else a
        if a.ndim not in (1, 3):
            raise ValueError(f"activation {name!r}: expected (H, W, C) or (F,), got {a.shape}")
        layers.append((name, a))

    ncols = max([min(a.shape[-1], _MAX_MAPS) for _, a in layers if a.ndim == 3] + [4])
    width, height = 0.9 * ncols + 1.2, 1.1 * (len(layers) + 1)
    fig = _figure(width, height, grid=(1.1 / width, 0.25 / height, 1 - 0.1 / width,
                                       1 - 0.1 / height, 0.1, 0.35))
    gs = fig.add_gridspec(len(layers) + 1, ncols)

    ax = fig.add_subplot(gs[0, 0])
    ax.imshow(image, cmap="gray", interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_ylabel(f"input\n{image.shape[0]}x{image.shape[1]}", fontsize=8)

    for row, (name, a) in enumerate(layers, start=1):
        if a.ndim == 1:
            ax = fig.add_subplot(gs[row, :])  # a vector gets the whole row
            ax.bar(np.arange(a.size), a, width=0.8, color=np.where(a >= 0, "C3", "C0"))
            ax.set_xlim(-0.5, a.size - 0.5)
            ax.tick_params(labelsize=7)
            ax.set_ylabel(f"{name}\n({a.size},)", fontsize=8)
            continue
        n = min(a.shape[-1], _MAX_MAPS)
        if a.min() < 0:
            lim = _symmetric_limit(a[..., :n])
            style = dict(cmap="RdBu_r", vmin=-lim, vmax=lim)
        else:
            style = dict(cmap="viridis", vmin=0.0, vmax=max(float(a[..., :n].max()), 1e-12))
        for c in range(n):
            ax = fig.add_subplot(gs[row, c])
            ax.imshow(a[:, :, c], interpolation="nearest", **style)
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                shown = "" if n == a.shape[-1] else f", first {n}"
                ax.set_ylabel(f"{name}\n{a.shape[0]}x{a.shape[1]}x{a.shape[2]}{shown}",
                              fontsize=8)
    return _save(fig, path)


def plot_confusion(cm, path, class_names=None):
    """A confusion matrix with counts written in each non-zero cell.

    cm: (K, K) int counts, rows = true class, columns = predicted class. Colour is on a log
    scale so that a handful of errors still shows next to ~1000 correct predictions; zero
    cells are left white. class_names: optional K labels (default 0..K-1).
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"expected a square (K, K) matrix, got shape {cm.shape}")
    k = cm.shape[0]
    names = [str(c) for c in (class_names if class_names is not None else range(k))]
    # LogNorm cannot show 0, so mask zeros; vmax >= 10 keeps the scale valid for tiny matrices.
    norm = LogNorm(vmin=1, vmax=max(float(cm.max()), 10.0))
    shown = np.ma.masked_less_equal(cm, 0)
    # Blues starts at white; start it at a visible tint so a count of 1 differs from an empty cell.
    cmap = ListedColormap(colormaps["Blues"](np.linspace(0.15, 1.0, 256)))

    size = max(4.0, 0.55 * k + 1.5)
    fig = _figure(size + 1.0, size)
    ax = fig.subplots()
    im = ax.imshow(shown, cmap=cmap, norm=norm, interpolation="nearest")
    ax.set_facecolor("white")
    fontsize = 8 if k <= 12 else 6
    for i, j in zip(*np.nonzero(cm)):
        dark = norm(cm[i, j]) > 0.55  # white text on dark cells, black on light ones
        ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=fontsize,
                color="white" if dark else "black")
    ax.set_xticks(range(k), names)
    ax.set_yticks(range(k), names)
    ax.set(xlabel="predicted", ylabel="true")
    total = cm.sum()
    acc = f", accuracy {100 * np.trace(cm) / total:.2f}%" if total else ""
    ax.set_title(f"Confusion matrix (n={int(total)}{acc})")
    fig.colorbar(im, ax=ax, shrink=0.8, label="count (log scale)")
    return _save(fig, path)


def plot_misclassified(images, labels, preds, path, max_n=36, probs=None):
    """A grid of misclassified examples titled "true→pred".

    images: (N, 28, 28) (a trailing channel axis of 1 is dropped); labels, preds: (N,) ints;
    probs: optional (N,) confidence of the predicted class, added to each title. When probs
    is given the most confident mistakes are shown first. At most max_n are drawn. N = 0
    writes a figure that says "no errors".
    """
    images = np.asarray(images, dtype=np.float64)
    images = images[..., 0] if images.ndim == 4 and images.shape[-1] == 1 else images
    labels, preds = np.asarray(labels).ravel(), np.asarray(preds).ravel()
    total = len(labels)
    if not (len(images) == total == len(preds)) or (probs is not None and len(probs) != total):
        raise ValueError("images, labels, preds (and probs) must have the same length N")

    if total == 0:
        fig = _figure(4, 2)
        fig.text(0.5, 0.5, "no errors", ha="center", va="center", fontsize=16)
        return _save(fig, path)

    order = np.arange(total)
    if probs is not None:
        probs = np.asarray(probs, dtype=np.float64).ravel()
        order = np.argsort(-probs, kind="stable")
    order = order[:max(int(max_n), 1)]
    n = len(order)
    ncols = math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    width, height = 1.2 * ncols + 0.4, 1.35 * nrows + 0.6
    fig = _figure(width, height, grid=(0.2 / width, 0.1 / height, 1 - 0.2 / width,
                                       1 - 0.6 / height, 0.15, 0.45))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, order):
        ax.imshow(images[i], cmap="gray", interpolation="nearest")
        title = f"{labels[i]}→{preds[i]}"
        if probs is not None:
            title += f" ({100 * probs[i]:.0f}%)"
        ax.set_title(title, fontsize=9, color="C3")
    shown = f", showing {n}" if n < total else ""
    shown += ", most confident first" if probs is not None else ""
    key = "true→pred (confidence)" if probs is not None else "true→pred"
    fig.suptitle(f"Misclassified: {total}{shown}   [{key}]")
    return _save(fig, path)


def plot_layer_gradients(rows, path, title="Gradient norms per layer", runs=None):
    """The two backprop equations over training: ‖dC/dX_i‖ (left) and ‖dC/dW_i‖ (right) of
    every layer against epoch, log scale.

    rows: metrics rows with ``dx_norm:<layer>`` / ``dw_norm:<layer>`` columns. runs: optional
    {label: rows} drawn side by side instead (e.g. the tanh network beside the ReLU one), one
    row of panels per run.
    """
    runs = runs if runs is not None else {"": rows}
    fig = _figure(11, 3.6 * len(runs))
    axes = np.atleast_2d(fig.subplots(len(runs), 2, squeeze=False))
    for (label, run_rows), (ax_x, ax_w) in zip(runs.items(), axes):
        run_rows = sorted(run_rows, key=lambda r: r["epoch"])
        epoch = np.array([r["epoch"] for r in run_rows])
        names = list(dict.fromkeys(k for r in run_rows for k in r if k.startswith(("dx_norm:", "dw_norm:"))))
        if not names:
            raise ValueError("plot_layer_gradients: the rows have no dx_norm:/dw_norm: columns")
        cmap = colormaps["viridis"]
        for prefix, ax, what in (("dx_norm:", ax_x, "‖dC/dX_i‖ (state gradient)"),
                                 ("dw_norm:", ax_w, "‖dC/dW_i‖ (weight gradient)")):
            cols = [n for n in names if n.startswith(prefix)]
            for j, col in enumerate(cols):
                ax.plot(epoch, [r.get(col, np.nan) for r in run_rows], marker="o", ms=3,
                        color=cmap(j / max(len(cols) - 1, 1)), label=col[len(prefix):])
            ax.set(yscale="log", xlabel="epoch", title=f"{label} {what}".strip())
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, ncol=2)
    fig.suptitle(title)
    return _save(fig, path)
