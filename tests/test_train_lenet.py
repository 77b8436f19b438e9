"""The LeNet-5 experiment end to end: a real-data smoke run, the command line, the accuracy
table. The crash + resume runs are in test_faults.py."""

import json
import os

import jax
import pytest

from experiments import train_lenet
from experiments.common.loop import UsageError, read_metrics, write_metrics
from experiments.train_lenet import Config, train_and_evaluate
from jaxnn import data as jdata


@pytest.fixture(autouse=True)
def standard_promotion():
    """optax's Adam mixes int32 step counts with floats, which strict promotion rejects."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def _real_data_dir():
    d = os.environ.get(jdata.ENV_VAR)
    if not d or not os.path.exists(os.path.join(d, "train-images-idx3-ubyte.gz")):
        pytest.skip("set JAXNN_DATA_DIR to a directory with the MNIST IDX files to run this test")
    return d


def _config(tmp_path, **kw):
    base = dict(epochs=2, batch_size=32, eval_batch_size=64, out=str(tmp_path / "run"),
                plots=False, progress=False)
    return Config(**{**base, **kw})


@pytest.mark.realdata
def test_real_mnist_smoke(tmp_path):
    config = _config(tmp_path, grad="manual", epochs=2, train_subset=3200, test_subset=1000,
                     data_dir=_real_data_dir(), out=str(tmp_path / "manual"), plots=True,
                     eval_batch_size=500)
    summary = train_and_evaluate(config)
    rows = read_metrics(config.out_dir() / "metrics.csv")
    assert len(rows) == 2                                   # 2 × 100 steps of 32 images
    assert rows[1]["train_loss"] < rows[0]["train_loss"] < 2.3
    assert rows[1]["test_acc"] > 0.85                       # chance is 0.10
    assert json.loads((config.out_dir() / "summary.json").read_text())["final"] == rows[-1]
    assert summary["final"]["test_acc"] == rows[-1]["test_acc"]
    saved = json.loads((config.out_dir() / "config.json").read_text())    # resolved, recorded
    assert saved["chunk"] == train_lenet.default_chunk()
    assert saved["eval_chunk"] == train_lenet.default_chunk(evaluation=True)
    assert saved["conv"] in train_lenet.CONVS
    plots = sorted(p.name for p in (config.out_dir() / "plots").iterdir())
    assert plots == ["activations.png", "confusion.png", "curves.png", "filters_conv1.png",
                     "layer_gradients.png", "misclassified.png"]


def test_cli_parses_flags():
    config = train_lenet.parse_args(["--variant", "classic", "--grad", "manual", "--epochs", "3",
                                     "--lr", "0.01", "--optimizer", "sgd", "--resume",
                                     "--chunk", "none", "--conv", "plain"])
    assert (config.variant, config.grad, config.epochs, config.learning_rate, config.optimizer,
            config.resume, config.chunk, config.conv) == ("classic", "manual", 3, 0.01, "sgd",
                                                          True, None, "plain")
    with pytest.raises(UsageError, match="--grad must be one of autodiff, manual; got 'symbolic'"):
        train_lenet.parse_args(["--grad", "symbolic"]).validate()
    with pytest.raises(UsageError, match="--chunk must be a positive integer or none"):
        train_lenet.parse_args(["--chunk", "0"]).validate()
    with pytest.raises(UsageError, match="--chunk 16: --variant bn has state"):
        train_lenet.parse_args(["--variant", "bn", "--chunk", "16"]).validate()
    with pytest.raises(UsageError, match="--conv must be one of plain, cpu"):
        train_lenet.parse_args(["--conv", "fft"]).validate()
    defaults = train_lenet.Config()
    assert (defaults.resolved("cpu").chunk, defaults.resolved("cpu").conv) == (32, "cpu")
    assert (defaults.resolved("gpu").chunk, defaults.resolved("gpu").conv) == (None, "plain")
    assert train_lenet.Config(variant="bn").resolved("cpu").chunk is None
    assert (defaults.eval_chunk("cpu"), defaults.eval_chunk("gpu")) == (250, None)
    assert train_lenet.Config(chunk=16).eval_chunk("cpu") == 16


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


def test_default_chunks_by_backend():
    assert train_lenet.default_chunk("cpu") == 32
    assert train_lenet.default_chunk("cpu", evaluation=True) == 250
    assert train_lenet.default_chunk("gpu") is None and train_lenet.default_chunk("tpu") is None
