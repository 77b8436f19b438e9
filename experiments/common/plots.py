"""Headless plots: the LeNet-5-on-MNIST figures, the figures of the spikes, gradient-agreement
and curve-agreement commands, and the helpers every experiment's figures share so that each is
fit to publish: `run_title` (study · seed), `integer_ticks` (whole-number ticks for integer
quantities), `percent_axis` (accuracy axes at least 10 points tall, saying where they start),
`signed_image` (diverging RdBu_r map with limits ±max|a|, 0 white) and `weight_grid` (weight
images on one scale with one colour bar).

Everything takes plain NumPy arrays (``np.asarray`` is applied, so jax arrays work too)
and writes one PNG. Figures are built with ``matplotlib.figure.Figure`` on an Agg canvas
rather than through pyplot, so importing this module never touches the global backend
and no figure is left registered in pyplot's figure manager.

Each ``plot_*`` function creates the parent directories of ``path``, saves atomically
(`experiments.common.loop.save_figure`: the file is whole or absent), closes the figure
and returns ``pathlib.Path(path)``.
"""
import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from experiments.common.loop import save_figure

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
    save_figure(fig, path, dpi=dpi)
    fig.clear()  # "close": the figure is not tracked by pyplot, so clearing it releases its artists
    return path


def _symmetric_limit(a):
    """Half-width of a colour range centred on 0; never 0, so an all-zero array still renders."""
    return float(np.max(np.abs(a), initial=0.0)) or 1.0


def run_title(study: str, seed: int | None = None, *details: str) -> str:
    """The title a figure of a run carries: "study · seed N · detail · ..." (seed left out when
    None, e.g. a study without randomness)."""
    parts = [study] + ([f"seed {seed}"] if seed is not None else []) + [d for d in details if d]
    return " · ".join(parts)


def integer_ticks(ax, axis: str = "x", values=None) -> None:
    """Whole-number ticks on `axis` ("x", "y" or "both") for an integer quantity (epochs, counts,
    units). With few distinct `values` (≤ 12) they become the ticks themselves: with one or two
    values even MaxNLocator(integer=True) falls back to fractional ticks."""
    for name in ("x", "y") if axis == "both" else (axis,):
        target = ax.xaxis if name == "x" else ax.yaxis
        distinct = None if values is None else np.unique(np.asarray(values, dtype=np.float64))
        if distinct is not None and 0 < len(distinct) <= 12 and np.all(distinct == np.round(distinct)):
            (ax.set_xticks if name == "x" else ax.set_yticks)(distinct)
        else:
            target.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))


def percent_axis(ax, values, *, min_span: float = 10.0, top: float = 100.0) -> tuple[float, float]:
    """y-limits for an accuracy in percent that do not exaggerate a small difference: the axis
    spans at least `min_span` points (lower limit a multiple of 5, 0 when it would fall below
    `min_span`, the upper never above `top` + 1), and when it does not start at 0 the axes say
    where it starts. Returns the
    limits."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return ax.get_ylim()
    hi = min(max(float(v.max()) + 0.05 * min_span, float(v.min()) + min_span), top + 1.0)
    lo = max(0.0, 5.0 * math.floor(min(float(v.min()) - 0.05 * min_span, hi - min_span) / 5.0))
    lo = 0.0 if lo < min_span else lo  # a floor that close to 0 gains nothing: start at 0
    ax.set_ylim(lo, hi)
    if lo > 0:
        ax.text(0.01, 0.01, f"y-axis from {lo:g} %", transform=ax.transAxes, fontsize=7,
                color="0.35", ha="left", va="bottom")
    return lo, hi


def signed_image(ax, a, lim: float | None = None, **kw):
    """imshow of a signed array on the diverging RdBu_r map with limits ±lim (default ±max|a|),
    so 0 is white, positive red, negative blue. Returns the image for a colour bar."""
    a = np.asarray(a, dtype=np.float64)
    lim = _symmetric_limit(a) if lim is None else (float(lim) or 1.0)
    kw.setdefault("interpolation", "nearest")
    return ax.imshow(a, cmap="RdBu_r", vmin=-lim, vmax=lim, **kw)


def weight_grid(fig, images, ncols: int, titles=None, label: str = "weight"):
    """Weight images (K, H, W) on a grid of axes sharing one colour scale, with one colour bar.
    Signed weights (any < 0) use the diverging RdBu_r map with limits ±max|w| (0 white); weights
    that are all ≥ 0 use a sequential map from 0 to the maximum, and the colour bar says so.
    Returns the axes (nrows, ncols)."""
    images = np.asarray(images, dtype=np.float64)
    k = len(images)
    nrows = -(-k // ncols)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    signed = bool(images.size and images.min() < 0)
    if signed:
        lim = _symmetric_limit(images)
        style = dict(cmap="RdBu_r", vmin=-lim, vmax=lim)
    else:
        style = dict(cmap="gray_r", vmin=0.0, vmax=float(images.max(initial=0.0)) or 1.0)
    im = None
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < k:
            im = ax.imshow(images[i], interpolation="nearest", **style)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    if im is not None:
        span = f"min {images.min():.2g}, max {images.max():.2g}"
        fig.colorbar(im, ax=axes, shrink=0.6, aspect=30,
                     label=f"{label} ({span})" if signed else f"{label} (all ≥ 0; {span})")
    return axes


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


def plot_curves(rows, path, title=None):
    """Loss and accuracy against epoch.

    rows: list of dicts with ``epoch``, ``train_loss``, ``train_acc``, ``test_acc``
    (accuracies as fractions in [0, 1]) and optionally ``test_loss``. Left panel: loss;
    right panel: train/test accuracy in percent, on an axis at least 10 points tall (see
    `percent_axis`). title: the figure's title (e.g. `run_title("LeNet-5 modern", 0)`).
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
    ax_loss.margins(y=0.12)  # headroom so the legend does not sit on the extreme points
    percent_axis(ax_acc, np.concatenate([train_acc, test_acc]))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
        integer_ticks(ax, "x", epoch)
    if title:
        fig.suptitle(title)
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
    fig.colorbar(im, ax=axes, shrink=0.8, label="weight (0 = white)")
    fig.suptitle(f"{title}  [{kh}x{kw}, {cout} filters]")
    return _save(fig, path)


def plot_activations(image, activations, path, title=None):
    """An input image and what each layer makes of it, one row per layer.

    image: (28, 28) float (a trailing channel axis of 1 is dropped).
    activations: list of (name, array); array is (H, W, C) feature maps, of which the first
    16 are shown, or an (F,) vector, shown as a bar chart. A leading batch axis of 1 is
    dropped. Each layer's maps share one colour scale: diverging around 0 if any value is
    negative (e.g. tanh), otherwise 0..max (e.g. ReLU); each row of maps ends in its colour bar.
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
    width, height = 0.9 * ncols + 2.0, 1.1 * (len(layers) + 1) + 0.5
    fig = _figure(width, height, grid=(1.1 / width, 0.35 / height, 1 - 0.9 / width,
                                       1 - 0.5 / height, 0.1, 0.45))
    gs = fig.add_gridspec(len(layers) + 1, ncols)
    fig.suptitle(title or "Activations of one test digit, layer by layer", fontsize=10)

    ax = fig.add_subplot(gs[0, 0])
    ax.imshow(image, cmap="gray", interpolation="nearest")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_ylabel(f"input\n{image.shape[0]}x{image.shape[1]}", fontsize=8)

    for row, (name, a) in enumerate(layers, start=1):
        if a.ndim == 1:
            ax = fig.add_subplot(gs[row, :])  # a vector gets the whole row
            ax.bar(np.arange(a.size), a, width=0.8, color=np.where(a >= 0, "C3", "C0"))
            ax.set_xlim(-0.5, a.size - 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.tick_params(labelsize=7)
            ax.set_ylabel(f"{name}\n({a.size},)", fontsize=8)
            ax.set_xlabel("unit (bar: activation; red ≥ 0, blue < 0)", fontsize=7, labelpad=1)
            continue
        n = min(a.shape[-1], _MAX_MAPS)
        if a.min() < 0:
            lim = _symmetric_limit(a[..., :n])
            style = dict(cmap="RdBu_r", vmin=-lim, vmax=lim)
        else:
            style = dict(cmap="viridis", vmin=0.0, vmax=max(float(a[..., :n].max()), 1e-12))
        row_axes = []
        for c in range(n):
            ax = fig.add_subplot(gs[row, c])
            im = ax.imshow(a[:, :, c], interpolation="nearest", **style)
            ax.set_xticks([]), ax.set_yticks([])
            row_axes.append(ax)
            if c == 0:
                shown = "" if n == a.shape[-1] else f", first {n}"
                ax.set_ylabel(f"{name}\n{a.shape[0]}x{a.shape[1]}x{a.shape[2]}{shown}",
                              fontsize=8)
        cbar = fig.colorbar(im, ax=row_axes, fraction=0.04, pad=0.01, aspect=8)
        cbar.ax.tick_params(labelsize=6)
        cbar.set_label("activation", fontsize=7)
    return _save(fig, path)


def plot_confusion(cm, path, class_names=None, title=None):
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
    ax.set_title(f"{title + chr(10) if title else ''}Confusion matrix (n={int(total)}{acc})")
    fig.colorbar(im, ax=ax, shrink=0.8, label="count (log scale)")
    return _save(fig, path)


def plot_misclassified(images, labels, preds, path, max_n=36, probs=None, title=None):
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
    head = f"{title}\n" if title else ""
    fig.suptitle(f"{head}Misclassified: {total}{shown}   [{key}]", fontsize=10 if title else None)
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
            ax.set(yscale="log", xlabel="epoch", ylabel="norm, fixed batch, end of epoch",
                   title=f"{label} {what}".strip())
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, ncol=2, title="layer", title_fontsize=6)
            integer_ticks(ax, "x", epoch)
    fig.suptitle(title)
    return _save(fig, path)


def plot_spikes(t, rate, train, single, pooled, dt, rows, error_rate, slope, path,
                seed: int | None = None):
    """The spikes study in one figure. Left: a raster of Poisson trains (train: (T, n) 0/1 in
    bins of dt seconds) above the rate that generated them (rate: (T,) Hz at times t, seconds)
    and two estimates of it (single: one train, boxcar 100 ms; pooled: all trains, Gaussian
    σ 20 ms). Right: the RMS error of the boxcar estimate of a constant `error_rate` against the
    window W, measured and predicted √(r(1 − r·dt)/W), log-log (rows: dicts with window_s,
    rms_error_hz, predicted_hz), with the fitted `slope`."""
    fig = _figure(13, 5.8)
    grid = fig.add_gridspec(2, 2, width_ratios=[2.2, 1], height_ratios=[1.3, 1])
    ax_raster = fig.add_subplot(grid[0, 0])
    ax_rate = fig.add_subplot(grid[1, 0], sharex=ax_raster)
    train = np.asarray(train)
    trial, time_bin = np.nonzero(train.T)
    ax_raster.scatter(time_bin * dt, trial, marker="|", s=30, color="black", lw=0.8,
                      label="spike")
    ax_raster.set(xlabel="time (s)", ylabel="train (one per row)",
                  title=f"{train.shape[1]} Poisson spike trains (bins of dt = {dt * 1e3:g} ms) "
                        "from one rate")
    ax_raster.set_ylim(-0.8, train.shape[1] - 0.2)
    ax_raster.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax_rate.plot(t, rate, color="tab:red", lw=2, label="rate that generated them")
    ax_rate.plot(t, single, color="tab:gray", lw=0.8, label="estimate, train 0 alone (boxcar 100 ms)")
    ax_rate.plot(t, pooled, color="tab:blue", lw=1.2, label="estimate, all trains (Gaussian σ 20 ms)")
    ax_rate.set(xlabel="time (s)", ylabel="rate (Hz)", title="the rate and two estimates of it")
    ax_rate.legend(fontsize=8, loc="upper left")
    ax_err = fig.add_subplot(grid[:, 1])
    w = np.array([r["window_s"] for r in rows])
    ax_err.loglog(w, [r["rms_error_hz"] for r in rows], "o", label="measured RMS error")
    ax_err.loglog(w, [r["predicted_hz"] for r in rows], "-", label="predicted √(r(1 − r·dt) / W)")
    ax_err.set(xlabel="window W (s)", ylabel="RMS error of the rate estimate (Hz)")
    ax_err.set_title(f"constant {error_rate:g} Hz: fitted slope {slope:.3f} (1/√W: −0.5)", fontsize=9)
    ax_err.grid(alpha=0.3, which="both")
    ax_err.legend(fontsize=8)
    fig.suptitle(run_title("Spikes and rates", seed))
    return _save(fig, path, dpi=110)


def plot_gradient_agreement(results, path, *, pairs, dtypes, tolerance, verdict,
                            floor: float = -17.0, seed: int | None = None):
    """The worst max relative error of each method against reverse mode, per layer case, one
    panel per dtype, log10 scale (an exact 0 is drawn at `floor`).

    results: dicts with "case", "dtype" and "rows" (each with "a": the method, "max_rel");
    pairs: the methods, in order; dtypes: the panels; tolerance(dtype, method) -> the relative
    tolerance that method is held to (each method's own line, in its colour, so a point is
    read against the line it must pass); verdict(result, row) -> "ok", "expected" (differs by
    design) or "FAIL": a filled marker is within tolerance, a hollow one is not (annotated)."""
    cases = list(dict.fromkeys(r["case"] for r in results))
    fig = _figure(max(10, 0.38 * len(cases)) + 3.5, 9.5)
    axes = fig.subplots(len(dtypes), 1, sharex=True, squeeze=False)[:, 0]
    markers = "o^sDv<>"
    for ax, dtype in zip(axes, dtypes):
        drawn_tol = {}
        for k, method in enumerate(pairs):
            colour, marker = f"C{k}", markers[k % len(markers)]
            filled, hollow = ([], []), ([], [])
            for res in (r for r in results if r["dtype"] == dtype):
                rows = [r for r in res["rows"] if r["a"] == method]
                if not rows:
                    continue
                worst = max(rows, key=lambda r: r["max_rel"])
                y = max(floor, float(np.log10(max(worst["max_rel"], 1e-300))))
                x = cases.index(res["case"])
                verdicts = {verdict(res, r) for r in rows}
                target = filled if verdicts == {"ok"} else hollow
                target[0].append(x), target[1].append(y)
                if "expected" in verdicts:
                    ax.annotate("differs by design", (x, y), xytext=(6, -3),
                                textcoords="offset points", fontsize=7)
                elif "FAIL" in verdicts:
                    ax.annotate("FAILS", (x, y), xytext=(6, -3), textcoords="offset points",
                                fontsize=7, color="C3")
            ax.scatter(*filled, marker=marker, color=colour, alpha=0.8, label=f"{method} vs reverse")
            if hollow[0]:
                ax.scatter(*hollow, marker=marker, facecolors="none", edgecolors=colour, lw=1.2)
            tol = float(tolerance(dtype, method))
            drawn_tol.setdefault(tol, []).append((method, colour))
        for j, (tol, methods) in enumerate(sorted(drawn_tol.items())):
            colour = methods[0][1] if len(methods) == 1 else "k"
            names = ", ".join(m for m, _ in methods)
            ax.axhline(np.log10(tol), color=colour, ls="--" if j == 0 else ":", lw=1,
                       label=f"tolerance of {names}: rel {tol:.0e}")
        ax.scatter([], [], marker="o", facecolors="none", edgecolors="0.4",
                   label="hollow: outside its tolerance")
        ax.set_ylabel(f"{dtype}: log10 max relative error")
        ax.set_ylim(floor - 0.5, max(1.0, ax.get_ylim()[1]))
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the points
        ax.grid(alpha=0.3)
    axes[-1].set_xticks(range(len(cases)), cases, rotation=75, ha="right", fontsize=7)
    axes[-1].set_xlabel("layer case")
    fig.suptitle(run_title("Gradient agreement with reverse mode", seed,
                           f"worst tensor per case; exact 0 drawn at {floor:.0f}"))
    return _save(fig, path, dpi=110)


def plot_curve_agreement(results, path, seed: int | None = None):
    """Per (variant, dtype) result: the relative gap |loss − loss_autodiff| / loss_autodiff of
    the manual run and of an autodiff run from a 1-ulp perturbed initialisation, against the
    training step, log scale (an exact 0 is drawn at 1e-17). results: dicts with "variant",
    "dtype" and "curves" {"autodiff", "manual", "perturbed"}: (steps,) losses."""
    fig = _figure(6 * len(results), 4.2)
    axes = fig.subplots(1, len(results), squeeze=False)[0]
    for ax, r in zip(axes, results):
        ref = np.asarray(r["curves"]["autodiff"], dtype=np.float64)
        for name, label in (("manual", "manual backward"), ("perturbed", "autodiff, 1-ulp init")):
            gap = np.abs(np.asarray(r["curves"][name], dtype=np.float64) - ref) / np.abs(ref)
            ax.semilogy(np.arange(1, len(gap) + 1), np.maximum(gap, 1e-17), lw=0.8, label=label)
        ax.set(title=f"LeNet-5 {r['variant']} ({r['dtype']})", xlabel="training step",
               ylabel="|loss − loss_autodiff| / loss_autodiff (0 drawn at 1e-17)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(run_title("Training curves by both gradient methods", seed))
    return _save(fig, path, dpi=100)
