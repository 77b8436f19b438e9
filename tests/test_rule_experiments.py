"""The learning-rule experiments refuse bad arguments in one line, before reading any data;
k-means labels separated clusters exactly."""

import numpy as np
import pytest

from experiments.common.loop import cli_main
from experiments.rules import hebbian, perceptron
from experiments.rules.kmeans import cluster_labels
from tests._cli import assert_one_line_usage_error


@pytest.mark.parametrize("module, argv, message", [
    (perceptron, ["--epochs", "0"], "--epochs must be positive, got 0"),
    (perceptron, ["--gd-lr", "-1"], "--gd-lr must be positive, got -1.0"),
    (perceptron, ["--train-subset", "10"], "--train-subset 10 is smaller than a batch"),
    (hebbian, ["--rule", "oja"], "--rule must be one of ['kh', 'wta'], got 'oja'"),
    (hebbian, ["--units", "-3"], "--units must be positive, got -3"),
    (hebbian, ["--clusters", "1"], "--clusters must be integers >= 2"),
])
def test_bad_arguments_exit_2_with_one_line(module, argv, message, tmp_path, capsys):
    assert_one_line_usage_error(module.main, ["--out", str(tmp_path / "run"), *argv], message, capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("module", [perceptron, hebbian])
def test_an_existing_run_is_not_overwritten(module, tmp_path, capsys):
    (tmp_path / "summary.json").write_text("{}")
    assert cli_main(module.main, ["--out", str(tmp_path)]) == 2
    assert "already holds a run; pass --resume" in capsys.readouterr().err


def test_kmeans_labels_well_separated_clusters_exactly():
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]], np.float32)
    labels = rng.integers(0, 3, 300)
    x = (centres[labels] + rng.normal(scale=0.5, size=(300, 2))).astype(np.float32)
    acc = cluster_labels(x[:200], labels[:200], x[200:], labels[200:], 6, seed=0)
    assert acc == {"train_label_acc": 1.0, "test_label_acc": 1.0}
