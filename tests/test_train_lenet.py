"""The LeNet-5 experiment end to end: a real-data smoke run, and a crash + resume that
continues bit for bit."""

import json
import os

import jax
import numpy as np
import pytest

import jaxnn.train.checkpoint
from experiments import train_lenet
from experiments.common.loop import UsageError, read_metrics, write_metrics
from experiments.train_lenet import Config, train_and_evaluate
from jaxnn import data as jdata


@pytest.fixture(autouse=True)
def standard_promotion():
    """optax's Adam mixes int32 step counts with floats, which strict promotion rejects."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def _synthetic(n_train=256, n_test=64, seed=0):
    rng = np.random.default_rng(seed)
    def make(n):
        return (rng.normal(size=(n, 28, 28, 1)).astype(np.float32),
                rng.integers(0, 10, n).astype(np.int32))
    return make(n_train), make(n_test)


def _real_data_dir():
    d = os.environ.get(jdata.ENV_VAR)
    if not d or not os.path.exists(os.path.join(d, "train-images-idx3-ubyte.gz")):
        pytest.skip("set JAXNN_DATA_DIR to a directory with the MNIST IDX files to run this test")
    return d


def _config(tmp_path, **kw):
    base = dict(epochs=3, batch_size=32, eval_batch_size=64, out=str(tmp_path / "run"),
                plots=False, progress=False)
    return Config(**{**base, **kw})


@pytest.mark.parametrize("variant", ["modern", "bn"])
def test_resume_after_a_crash_continues_bit_for_bit(tmp_path, monkeypatch, variant):
    """For "bn" the training state includes BatchNorm's running statistics (and Dropout
    draws from the step keys), which must come back exactly too."""
    data = _synthetic()
    straight = _config(tmp_path, out=str(tmp_path / "straight"), variant=variant)
    train_and_evaluate(straight, data)

    crashed = _config(tmp_path, out=str(tmp_path / "crashed"), variant=variant)
    save = jaxnn.train.checkpoint.Checkpoints.save

    def save_then_die(self, step, state):
        save(self, step, state)
        if step == 1:
            raise KeyboardInterrupt("killed after epoch 1")

    monkeypatch.setattr(jaxnn.train.checkpoint.Checkpoints, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_and_evaluate(crashed, data)
    monkeypatch.setattr(jaxnn.train.checkpoint.Checkpoints, "save", save)
    with pytest.raises(UsageError, match="pass --resume"):
        train_and_evaluate(crashed, data)
    train_and_evaluate(Config(**{**crashed.__dict__, "resume": True}), data)

    a = read_metrics(straight.out_dir() / "metrics.csv")
    b = read_metrics(crashed.out_dir() / "metrics.csv")
    assert [r["epoch"] for r in b] == [1, 2, 3]
    for key in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert [r[key] for r in a] == [r[key] for r in b], key
    _, sa = train_lenet.load_trained(straight.out_dir())
    _, sb = train_lenet.load_trained(crashed.out_dir())
    for x, y in zip(jax.tree.leaves(sa), jax.tree.leaves(sb)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    if variant == "bn":
        running_mean = sb["model_state"][1].mean
        assert float(np.abs(np.asarray(running_mean)).max()) > 0  # the state was trained and kept


@pytest.mark.realdata
def test_real_mnist_smoke_both_gradient_methods(tmp_path):
    data_dir = _real_data_dir()
    results = {}
    for grad in ("autodiff", "manual"):
        config = _config(tmp_path, grad=grad, epochs=2, train_subset=3200, test_subset=2000,
                         data_dir=data_dir, out=str(tmp_path / grad), plots=grad == "manual",
                         eval_batch_size=500)
        summary = train_and_evaluate(config)
        rows = read_metrics(config.out_dir() / "metrics.csv")
        results[grad] = rows
        assert len(rows) == 2                                   # 2 × 100 steps of 32 images
        assert rows[1]["train_loss"] < rows[0]["train_loss"] < 2.3
        assert rows[1]["test_acc"] > 0.85                       # chance is 0.10
        assert json.loads((config.out_dir() / "summary.json").read_text())["final"] == rows[-1]
        assert summary["final"]["test_acc"] == rows[-1]["test_acc"]
    plots = sorted(p.name for p in (tmp_path / "manual" / "plots").iterdir())
    assert plots == ["activations.png", "confusion.png", "curves.png", "filters_conv1.png",
                     "layer_gradients.png", "misclassified.png"]
    for a, m in zip(results["autodiff"], results["manual"]):
        assert m["train_loss"] == pytest.approx(a["train_loss"], rel=1e-3)
        assert abs(m["test_acc"] - a["test_acc"]) <= 0.005


def test_cli_parses_flags():
    config = train_lenet.parse_args(["--variant", "classic", "--grad", "manual", "--epochs", "3",
                                     "--lr", "0.01", "--optimizer", "sgd", "--resume"])
    assert (config.variant, config.grad, config.epochs, config.learning_rate, config.optimizer,
            config.resume) == ("classic", "manual", 3, 0.01, "sgd", True)
    with pytest.raises(UsageError, match="--grad must be one of autodiff, manual; got 'symbolic'"):
        train_lenet.parse_args(["--grad", "symbolic"]).validate()


def test_accuracy_table_collects_runs_and_curve_gaps(tmp_path):
    from experiments.lenet import lenet_table

    for grad, acc, loss in (("autodiff", 0.99, 0.10), ("manual", 0.991, 0.1001)):
        d = lenet_table.run_dir(tmp_path, "modern", grad, 0)
        d.mkdir(parents=True)
        row = {"epoch": 1, "train_loss": loss, "train_acc": 0.9, "test_loss": 0.1, "test_acc": acc,
               "epoch_seconds": 1.0, "images_per_second": 10.0}
        write_metrics(d / "metrics.csv", [row])
        (d / "summary.json").write_text(json.dumps({"final": row, "train_seconds": 1.0}))
    lenet_table.main(["--variants", "modern", "--seeds", "0", "--out", str(tmp_path),
                      "--collect-only"])
    table = json.loads((tmp_path / "table.json").read_text())
    assert [(r["grad"], r["mean"]) for r in table["runs"]] == [("autodiff", 0.99), ("manual", 0.991)]
    gap = table["curve_gaps"][0]
    assert gap["max_rel_train_loss_gap"] == pytest.approx(1e-3)
    assert gap["max_test_acc_gap"] == pytest.approx(0.001)
    assert "| modern | manual | 1 | 99.10% | **99.10%** |" in (tmp_path / "table.md").read_text()
