"""Tests for experiments.common.plots: every plot writes a real PNG, edge cases included, and
confusion_matrix matches counts worked out by hand."""
import pathlib

import numpy as np
import pytest

from experiments.common import plots

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
