"""Tests for the experiments' figures: every plot of experiments.common.plots writes a real PNG,
edge cases included; confusion_matrix matches counts worked out by hand; and the figures are fit
to publish (colour bars where colour encodes a value, diverging maps with symmetric limits for
signed weights, integer ticks for integer quantities, accuracy axes that do not exaggerate,
legends for every encoding, labels that say what is drawn)."""
import pathlib
from types import SimpleNamespace

import numpy as np
import pytest

from experiments.common import plots
from experiments.lenet import filters_plots
from experiments.reward import reinforce_plots
from experiments.rules import hebbian_plots, perceptron_plots

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_png(path, expected):
    assert pathlib.Path(path) == pathlib.Path(expected)
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 1000  # more than an empty canvas header


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_confusion_matrix_hand_computed():
    labels = [0, 0, 1, 2, 2, 2, 1]
    preds = [0, 1, 1, 2, 0, 2, 1]
    expected = np.array([[1, 1, 0],
                         [0, 2, 0],
                         [1, 0, 2]])
    cm = plots.confusion_matrix(labels, preds, num_classes=3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, expected)


def test_confusion_matrix_defaults_and_validation():
    cm = plots.confusion_matrix(np.array([9, 3]), np.array([9, 4]))
    assert cm.shape == (10, 10) and cm.sum() == 2 and cm[9, 9] == 1 and cm[3, 4] == 1
    assert plots.confusion_matrix([], [], num_classes=4).sum() == 0
    with pytest.raises(ValueError):
        plots.confusion_matrix([0, 3], [0, 1], num_classes=3)
    with pytest.raises(ValueError):
        plots.confusion_matrix([0, 1], [0], num_classes=3)


def _rows(n):
    return [dict(epoch=e, train_loss=1.0 / e, train_acc=1 - 0.1 / e, test_acc=1 - 0.12 / e,
                 test_loss=1.1 / e) for e in range(1, n + 1)]


@pytest.mark.parametrize("rows", [_rows(10), _rows(1),
                                  [{k: v for k, v in r.items() if k != "test_loss"}
                                   for r in _rows(3)]],
                         ids=["ten_epochs", "single_epoch", "no_test_loss"])
def test_plot_curves(tmp_path, rows):
    out = tmp_path / "nested" / "curves.png"  # parent directory does not exist yet
    assert_png(plots.plot_curves(rows, out), out)


@pytest.mark.parametrize("shape", [(5, 5, 1, 6), (5, 5, 6, 16), (3, 3, 2, 1)])
def test_plot_filters(tmp_path, rng, shape):
    out = tmp_path / "filters.png"
    assert_png(plots.plot_filters(rng.normal(size=shape), out, title="conv"), out)


def test_plot_filters_all_zero(tmp_path):
    out = tmp_path / "zero.png"
    assert_png(plots.plot_filters(np.zeros((5, 5, 1, 6)), out), out)


def test_plot_activations(tmp_path, rng):
    acts = [
        ("conv1", np.tanh(rng.normal(size=(28, 28, 6)))),
        ("pool1", rng.uniform(size=(14, 14, 6))),             # non-negative: 0..max scale
        ("conv2", rng.normal(size=(1, 10, 10, 20))),           # batch of 1, > 16 maps
        ("fc", rng.normal(size=(84,))),
        ("logits", rng.normal(size=(1, 10))),
    ]
    out = tmp_path / "acts.png"
    assert_png(plots.plot_activations(rng.uniform(size=(28, 28)), acts, out), out)


def test_plot_activations_rejects_bad_rank(tmp_path):
    with pytest.raises(ValueError):
        plots.plot_activations(np.zeros((28, 28)), [("bad", np.zeros((2, 3)))],
                               tmp_path / "x.png")


def test_plot_confusion(tmp_path, rng):
    labels = rng.integers(0, 10, size=500)
    preds = np.where(rng.uniform(size=500) < 0.9, labels, rng.integers(0, 10, size=500))
    cm = plots.confusion_matrix(labels, preds)
    out = tmp_path / "cm.png"
    assert_png(plots.plot_confusion(cm, out), out)
    out2 = tmp_path / "cm_named_zero.png"
    assert_png(plots.plot_confusion(np.zeros((3, 3), int), out2, class_names="abc"), out2)


def test_plot_misclassified(tmp_path, rng):
    n = 50  # more than max_n, so only the first 36 are drawn
    images = rng.uniform(size=(n, 28, 28))
    labels = rng.integers(0, 10, size=n)
    preds = (labels + 1) % 10
    out = tmp_path / "mis.png"
    assert_png(plots.plot_misclassified(images, labels, preds, out), out)
    out2 = tmp_path / "mis_probs.png"
    assert_png(plots.plot_misclassified(images[:5, :, :, None], labels[:5], preds[:5], out2,
                                        probs=rng.uniform(size=5)), out2)


def test_plot_misclassified_no_errors(tmp_path):
    out = tmp_path / "none.png"
    empty = np.zeros((0,), dtype=np.int64)
    assert_png(plots.plot_misclassified(np.zeros((0, 28, 28)), empty, empty, out), out)


# ---------------------------------------------------------------- figures fit to publish
# Each figure is captured where its module saves it (no PNG is written: fast), and the
# properties a reader relies on are checked on the live Figure.



@pytest.fixture
def capture(monkeypatch):
    """capture(module, name): figures passed to module.<name> (its save function) are kept in
    the returned list instead of being written."""
    def install(module, name):
        figs = []

        def keep(fig, path, *args, **kwargs):
            figs.append(fig)
            return pathlib.Path(path)
        monkeypatch.setattr(module, name, keep)
        return figs
    return install


def _images(fig):
    return [im for ax in fig.axes for im in ax.get_images()]


def _assert_diverging_symmetric(im, data_max=None):
    lo, hi = im.get_clim()
    assert im.get_cmap().name == "RdBu_r"
    assert lo == pytest.approx(-hi) and hi > 0
    if data_max is not None:
        assert hi == pytest.approx(data_max)


def _suptitle(fig):
    return fig._suptitle.get_text() if fig._suptitle is not None else ""


def _integer_ticks(ticks):
    ticks = np.asarray(ticks, dtype=np.float64)
    return ticks.size > 0 and np.all(ticks == np.round(ticks))


def test_weight_images_diverging_symmetric_with_colour_bar(tmp_path, rng, capture):
    figs = capture(plots, "_save")
    w = rng.normal(size=(5, 5, 1, 6))
    plots.plot_filters(w, tmp_path / "f.png")
    ims = _images(figs[0])
    assert len(ims) == 6
    for im in ims:
        _assert_diverging_symmetric(im, np.abs(w).max())
        assert im.colorbar is not None or any(i.colorbar is not None for i in ims)
    assert any(im.colorbar is not None for im in ims)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["all_positive", "signed"])
def test_weight_grid_map_fits_the_sign(sign, rng, capture, tmp_path):
    figs = capture(hebbian_plots, "save")
    w = np.abs(rng.normal(size=(784, 12)))
    if sign < 0:
        w[:, 0] *= -1
    hebbian_plots.plot_receptive_fields(w, np.arange(12), tmp_path / "rf.png", count=12,
                                        rule="wta", seed=3)
    fig = figs[0]
    ims = _images(fig)
    assert len(ims) == 12 and any(im.colorbar is not None for im in ims)
    if sign < 0:
        for im in ims:
            _assert_diverging_symmetric(im, np.abs(w).max())
    else:  # all ≥ 0: a sequential map from 0, and the colour bar says so
        for im in ims:
            assert im.get_clim()[0] == 0.0 and im.get_cmap().name != "RdBu_r"
        bars = [im.colorbar for im in ims if im.colorbar is not None]
        assert "≥ 0" in bars[0].ax.get_ylabel()
    assert "seed 3" in _suptitle(fig) and "wta" in _suptitle(fig)


def test_activation_rows_each_have_a_colour_bar(rng, capture, tmp_path):
    figs = capture(plots, "_save")
    acts = [("conv", np.tanh(rng.normal(size=(6, 6, 3)))), ("pool", rng.uniform(size=(3, 3, 3))),
            ("fc", rng.normal(size=(5,)))]
    plots.plot_activations(rng.uniform(size=(28, 28)), acts, tmp_path / "a.png")
    images = [im for im in _images(figs[0]) if im.get_array().shape != (28, 28)]
    assert sum(im.colorbar is not None for im in images) == 2  # one per image row
    signed = [im for im in images if im.get_array().shape == (6, 6)]
    for im in signed:
        _assert_diverging_symmetric(im)
    bars = [ax for ax in figs[0].axes if ax.patches and not ax.get_images()]
    assert bars and bars[0].get_xlabel()  # the bar chart names its axis


def test_filter_figures_label_what_they_show(rng, capture, tmp_path):
    figs = capture(filters_plots, "_save")
    edges = {"vertical": rng.normal(size=(5, 5)), "horizontal": rng.normal(size=(5, 5))}
    conv1 = rng.normal(size=(5, 5, 1, 3))
    matches = [{"best": "vertical", "r": 0.5}] * 3
    filters_plots.plot_edges_vs_learned(edges, conv1, rng.uniform(-1, 1, (3, 2)), matches,
                                        tmp_path / "e.png")
    ims = _images(figs[-1])
    learned = [im for im in ims if im.get_array().shape == (5, 5)]
    assert len(learned) == 5
    for im in learned:
        _assert_diverging_symmetric(im)
    # one scale per row (the learned filters share theirs), each row with a colour bar
    assert len({im.get_clim() for im in learned[2:]}) == 1
    assert sum(im.colorbar is not None for im in ims) == 3

    stim = np.zeros((28, 28))
    stim[10:16, 12] = 1
    filters_plots.plot_conv1_on_curve(stim, rng.normal(size=(28, 28, 3)), rng.normal(size=(28, 28, 3)),
                                      tmp_path / "c.png")
    texts = [ax.get_title() for ax in figs[-1].axes] + [ax.get_ylabel() for ax in figs[-1].axes]
    peaks = [t for t in texts if "peak" in t]
    assert not peaks, f"a peak of response − blank is labelled as a peak: {peaks}"
    assert any("− blank" in t for t in texts)
    assert any(im.colorbar is not None for im in _images(figs[-1]))

    pixels = rng.uniform(size=(6, 28, 28))
    cosine = rng.uniform(size=(6, 22, 22))
    filters_plots.plot_extremes(pixels, cosine, np.arange(6), [0, 1], [5, 4], cosine.max((1, 2)),
                                np.full(6, 180.0), tmp_path / "x.png", raw_max=180)
    labels = [ax.get_ylabel() for ax in figs[-1].axes if ax.get_ylabel()]
    assert labels == ["highest cosine", "lowest cosine"]
    assert "respond least" not in _suptitle(figs[-1])


@pytest.mark.parametrize("n_epochs", [1, 3, 20])
def test_integer_quantities_get_integer_ticks(n_epochs, capture, tmp_path):
    figs = capture(plots, "_save")
    plots.plot_curves(_rows(n_epochs), tmp_path / "c.png", title=plots.run_title("LeNet-5", 7))
    rows = [{"epoch": e, "dx_norm:C1": 1.0 / e, "dw_norm:C1": 2.0 / e} for e in range(1, n_epochs + 1)]
    plots.plot_layer_gradients(rows, tmp_path / "g.png")
    for fig in figs:
        for ax in fig.axes[:2]:
            assert _integer_ticks(ax.get_xticks()), ax.get_xticks()
    assert "seed 7" in _suptitle(figs[0])
    pfigs = capture(perceptron_plots, "save")
    perceptron_plots.plot_mistakes([5, 2, 0], 40.0, tmp_path / "m.png", seed=1)
    assert _integer_ticks(pfigs[0].axes[0].get_xticks())
    assert "seed 1" in pfigs[0].axes[0].get_title()


def test_accuracy_axis_is_not_zoomed_to_a_small_gain(capture, tmp_path):
    figs = capture(perceptron_plots, "save")
    rows = [{"epoch": e, "test_acc": a} for e, a in ((1, 0.942), (2, 0.950), (3, 0.955))]
    perceptron_plots.plot_runs({"perceptron": rows}, tmp_path / "r.png", seed=0)
    ax = figs[0].axes[0]
    lo, hi = ax.get_ylim()
    assert hi - lo >= 10 and lo <= 94.2 and hi <= 101
    assert any("from" in t.get_text() and "%" in t.get_text() for t in ax.texts)  # says so
    lo0, _ = plots.percent_axis(ax, [10.0, 60.0])
    assert lo0 == 0.0  # a wide range starts at 0 (no note needed)


def test_cartpole_axis_ends_near_the_solve_point(capture, tmp_path):
    figs = capture(reinforce_plots, "_save")
    episodes = np.arange(4800)
    solved = np.where(episodes < 550, 20.0, 500.0)  # the moving mean reaches 475 near 650
    reinforce_plots.cartpole_curves({"0": solved, "1": solved}, 475.0, tmp_path / "cp.png")
    ax = figs[0].axes[0]
    at = reinforce_plots.first_reach(solved, 100, 475.0)
    assert 600 < at < 700
    assert ax.get_xlim()[1] < 1200  # not 4800
    assert any("solved at episode" in t.get_text() for t in ax.get_legend().get_texts())
    assert any("of 4800" in t.get_text() for t in ax.texts)
    reinforce_plots.cartpole_curves({"0": np.full(300, 20.0)}, 475.0, tmp_path / "cp2.png")
    assert figs[1].axes[0].get_xlim()[1] >= 299  # unsolved: the whole run is shown


def test_tolerance_lines_match_the_points_they_judge(capture, tmp_path):
    figs = capture(plots, "_save")
    results = [{"case": "dense", "dtype": "float64",
                "rows": [{"a": "manual", "max_rel": 1e-15, "agree": True},
                         {"a": "finite_diff", "max_rel": 1e-9, "agree": True}]}]
    tol = {"manual": 1e-10, "finite_diff": 1e-6}
    plots.plot_gradient_agreement(results, tmp_path / "g.png", pairs=["manual", "finite_diff"],
                                  dtypes=["float64"], tolerance=lambda d, m: tol[m],
                                  verdict=lambda res, row: "ok" if row["agree"] else "FAIL", seed=0)
    ax = figs[0].axes[0]
    lines = {round(float(line.get_ydata()[0]), 6): line.get_color() for line in ax.get_lines()}
    assert set(lines) == {-10.0, -6.0}  # one line per tolerance, each method's own
    fd_points = [c for c in ax.collections if c.get_label() == "finite_diff vs reverse"][0]
    fd_colour = fd_points.get_facecolor()[0]
    # the finite-difference point (1e-9) lies below the line it is judged by (its own colour)
    assert np.allclose(matplotlib_colour(lines[-6.0]), fd_colour[:3], atol=1e-6)
    assert fd_points.get_offsets()[0][1] < -6.0


def matplotlib_colour(c):
    from matplotlib.colors import to_rgb
    return np.array(to_rgb(c))


def test_rate_rnn_figures_name_every_encoding(capture, tmp_path, monkeypatch):
    from experiments.rate import rate_rnn_plots

    figs = capture(rate_rnn_plots, "_save")
    # spikes drawn in NumPy: the figure is under test here, not the sampler (no compilation)
    monkeypatch.setattr(rate_rnn_plots.spikes, "poisson_spikes",
                        lambda hz, dt, key: np.random.default_rng(0).uniform(size=hz.shape) < hz * dt)
    task = SimpleNamespace(name="perceptual_decision", dt=20.0, n_steps=4, n_in=3, n_out=3,
                           goal=0.85, higher_is_better=True, conditions=("coherence",))
    signs = np.array([1, 1, 1, -1])
    rates = np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4)
    rate_rnn_plots.rates_and_raster(task, rates, signs, tmp_path / "r.png", None, seed=2)
    raster = figs[0].axes[1]
    names = [t.get_text() for t in raster.get_legend().get_texts()]
    assert any("excitatory" in n for n in names) and any("inhibitory" in n for n in names)
    assert raster.get_xlabel().startswith("time (ms")
    assert "seed 2" in _suptitle(figs[0])

    trials = SimpleNamespace(x=np.zeros((3, 4, 3)), target=np.zeros((3, 4), int),
                             condition=np.zeros((3, 1)))
    rate_rnn_plots.example_trials(task, trials, np.zeros((3, 4, 3)), tmp_path / "t.png", seed=2)
    legend_texts = [t.get_text() for leg in figs[1].legends for t in leg.get_texts()]
    assert "fixation cue" in legend_texts and "P(fixate)" in legend_texts

    rate_rnn_plots.curves(task, [{"epoch": 1, "train_loss": 1.0, "eval_loss": 1.0, "performance": 0.5}],
                          50, tmp_path / "c.png", seed=2)
    perf = figs[2].axes[1]
    assert any("goal" in t.get_text() for t in perf.get_legend().get_texts())

    w = np.array([[0.5, 0.2, 0.0, 0.1], [0.1, 0.0, 0.3, 0.2], [0.0, 0.4, 0.1, 0.0],
                  [-0.3, -0.1, -0.2, 0.0]])
    rate_rnn_plots.weights(w, signs, tmp_path / "w.png", task=task, seed=2)
    _assert_diverging_symmetric(_images(figs[3])[0], 0.5)
    assert _images(figs[3])[0].colorbar is not None



SAVERS = [("experiments.common.plots", "_save"), ("experiments.rules.rules_common", "save"),
          ("experiments.lenet.filters_plots", "_save"), ("experiments.reward.reinforce_plots", "_save"),
          ("experiments.vision.plots", "_save"), ("experiments.rate.rate_rnn_plots", "_save")]


@pytest.mark.parametrize("module, name", SAVERS, ids=[m for m, _ in SAVERS])
def test_a_figure_that_fails_while_saving_leaves_no_file(module, name, tmp_path, monkeypatch):
    # Every figure helper saves through loop.save_figure: a writer stopped halfway (here, one
    # that writes a few bytes and raises) leaves neither a partial PNG nor a temporary file.
    import importlib

    from matplotlib.figure import Figure

    def broken_savefig(self, target, **kwargs):
        if hasattr(target, "write"):
            target.write(PNG_SIGNATURE)
        else:
            pathlib.Path(target).write_bytes(PNG_SIGNATURE)
        raise OSError(28, "No space left on device")

    save = getattr(importlib.import_module(module), name)
    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    path = tmp_path / "figure.png"
    with pytest.raises(OSError, match="No space left"):
        save(Figure(), path)
    assert list(tmp_path.iterdir()) == []
