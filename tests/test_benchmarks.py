"""The benchmark's quick paths run end to end and write the rows they promise; data problems are
told apart (missing: a note and random data; corrupt: one line, exit 2)."""

import json

import jax
import pytest

import jaxnn.data
from benchmarks import chunk_sizes, run, sweep
from jaxnn.data import DataError


def test_quick_run_writes_rows(tmp_path):
    # optax's Adam mixes Python floats with int32 counters, which conftest's strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        result = run.main(["--repeats", "1", "--steps", "2", "--only", "jaxnn autodiff",
                           "--no-step-rows", "--no-sweep", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "lenet_epoch.json").read_text())
    assert saved["rows"] == result["rows"]
    names = [r["name"] for r in saved["rows"]]
    assert names == ["epoch/jaxnn autodiff"]
    for row in saved["rows"]:
        assert row["median"] > 0 and row["min"] <= row["median"] <= row["max"]
    assert saved["rows"][0]["ratio_vs_autodiff"] == 1.0
    assert saved["machine"]["cores"] >= 1 and saved["versions"]["jax"]
    assert "| epoch/jaxnn autodiff (s/epoch) |" in (tmp_path / "lenet_epoch.md").read_text()


def test_sweep_rows_table_and_plot(tmp_path):
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 28, 28, 1), np.float32)
    y = rng.integers(0, 10, 8).astype(np.int32)
    with jax.numpy_dtype_promotion("standard"):
        result = sweep.sweep(x, y, batches=(8,), repeats=1, images_per_turn=8,
                             contenders=("jaxnn manual chunk 32", "jaxnn chunk 32"), log=lambda line: None)
    (train,), (evaluation,) = result["train"], result["eval"]
    assert (train["name"], evaluation["name"]) == ("jaxnn manual chunk 32", "jaxnn chunk 32")
    for row in (train, evaluation):
        assert row["batch"] == 8 and row["us_per_image"] > 0 and row["x_pytorch"] is None
        assert len(row["load_before"]) == 3
    table = sweep.markdown(result)
    assert "| batch | jaxnn manual chunk 32 | load |" in table and "| 8 | " in table
    sweep.plot(result, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 0


def test_chunk_sizes_rows_side_by_side(tmp_path):
    with jax.numpy_dtype_promotion("standard"):
        result = chunk_sizes.main(["--eval-batch", "8", "--eval-chunks", "none,3", "--train-batch", "4",
                                   "--train-chunks", "2", "--methods", "manual", "--rounds", "1",
                                   "--calls", "1", "--conv", "plain", "--out", str(tmp_path)])
    rows = [(r["kind"], r["method"], r["chunk"]) for r in result["rows"]]
    assert rows == [("eval", "", None), ("eval", "", 3), ("train", "manual", 2)]
    assert result["rows"][0]["x_whole"] == 1.0 and result["rows"][2]["x_whole"] is None
    table = (tmp_path / "chunk_sizes.md").read_text()
    assert "| eval | 8 | – | whole |" in table and "| train | 4 | manual | 2 |" in table


def test_missing_data_falls_back_with_a_note(monkeypatch, capsys):
    def missing(*args, **kwargs):
        raise FileNotFoundError("mnist: train-images-idx3-ubyte[.gz] is in none of:")
    monkeypatch.setattr(jaxnn.data, "load_mnist", missing)
    x, y, source = run.load_data(1)
    assert x.shape == (128, 28, 28, 1) and y.shape == (128,) and source.startswith("random")
    assert "note: the MNIST training files are not where jaxnn.data looks" in capsys.readouterr().out


def test_corrupt_data_fails_in_one_line(monkeypatch, capsys, tmp_path):
    def corrupt(*args, **kwargs):
        raise DataError("/data/train-images-idx3-ubyte.gz (mnist): checksum mismatch.\nReplace it.")
    monkeypatch.setattr(jaxnn.data, "load_mnist", corrupt)
    with pytest.raises(SystemExit) as exit_info:
        run.main(["--sweep-only", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("benchmarks.run: /data/train-images") and "checksum" in err
