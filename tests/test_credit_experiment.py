"""The credit-assignment command end to end on a few random images (the real data are not
needed to check its plumbing): every method's run, summary.json with the test error beside
BioTorch's figure and the angles per weight layer, and --freeze keeping a layer at its initial
values while the others learn."""

import json

import jax
import numpy as np
import pytest

from experiments import train_lenet
from experiments.common.cli import UsageError
from experiments.credit import credit_assignment as ca


def _images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, n).astype(np.int32)


@pytest.fixture(autouse=True)
def standard_promotion():
    with jax.numpy_dtype_promotion("standard"):  # optax's AdamW mixes int32 step counts with floats
        yield


@pytest.fixture
def fake_data(monkeypatch):
    monkeypatch.setattr(train_lenet, "load_data", lambda config: (_images(320, 0), _images(64, 1)))


def test_the_command_writes_every_methods_error_and_angles(fake_data, tmp_path, capsys):
    out = tmp_path / "credit"
    assert ca.main(["--out", str(out), "--datasets", "mnist", "--methods", "fa",
                    "--seeds", "0", "--epochs", "1", "--holdout", "64", "--chunk", "none"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    results = summary["results"]["mnist"]
    assert set(results) == {"fa"}
    for method, r in results.items():
        assert 0 <= r["test_error_mean"] <= 100 and r["test_error_n"] == 1
        assert r["biotorch_test_error"] == ca.BIOTORCH[method][0]
        angles = r["angle_degrees_mean_over_seeds"]
        assert set(angles) == {"C1", "C3", "C5", "F6", "output"}
        assert all(0 <= a[-1] <= 180 for a in angles.values())
    # FA's hidden layers are not updated along backprop's gradient; its output layer is
    fa = results["fa"]["angle_degrees_mean_over_seeds"]
    assert fa["output"][-1] < 1e-3 and min(fa[k][-1] for k in ("C1", "C3", "C5", "F6")) > 1.0
    assert summary["protocol"]["frozen"] == "nothing"
    assert "| FA |" in capsys.readouterr().out


def test_freeze_keeps_a_layer_at_its_initial_values(tmp_path):
    s = ca.Settings(out=str(tmp_path), freeze=("C1",), chunk=None)
    r = ca.build(s, "mnist", "fa", 0, 2e-3, 1, tmp_path, n_train=256)
    params, model_state = r.init_model()
    state = r.train.init(params, model_state)
    x, y = _images(r.config.batch_size, 2)
    new, _ = r.train.step(state, (x, y), jax.random.key(1))
    names = [n for n, _ in ca.lenet5_stages("modern")]
    for name in ("C1", "C3", "output"):
        i = names.index(name)
        moved = [not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state.params[i]),
                                                          jax.tree.leaves(new.params[i]))]
        assert moved and all(moved) == (name != "C1") and any(moved) == (name != "C1"), name


def test_freeze_refuses_a_layer_that_has_no_weights(tmp_path):
    with pytest.raises(UsageError, match="--freeze: invalid choice: 'S2'"):
        ca.parse_args(["--out", str(tmp_path / "x"), "--freeze", "S2"])
