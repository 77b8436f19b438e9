"""The README's "write your own layer" example: checked four ways, then trained by the loop."""

import json

import jax
import numpy as np

from experiments.backprop import own_layer


def test_prelu_backward_agrees_with_every_method():
    report = own_layer.check_layer()
    assert report["agree"]
    assert {"manual", "reverse", "forward", "finite_diff"} <= set(report["methods"])


def test_prelu_mlp_trains_on_the_shared_loop(tmp_path):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 1100).astype(np.int32)
    x = (rng.normal(size=(1100, 28, 28, 1)) + 0.3 * y[:, None, None, None]).astype(np.float32)
    config = own_layer.Config(out=str(tmp_path / "run"), epochs=2, progress=False)
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam mixes int and float
        summary = own_layer.train_and_evaluate(config, ((x[:1000], y[:1000]), (x[1000:], y[1000:])))
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3 and summary["gradient_check"]
    assert summary["final"]["test_acc"] > 0.9  # chance is 0.5
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final"]["epoch"] == 2
