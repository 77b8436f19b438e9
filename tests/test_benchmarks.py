"""The benchmark's quick path runs end to end and writes the rows it promises."""

import json

import jax

from benchmarks import run


def test_quick_run_writes_rows(tmp_path):
    # optax's Adam mixes Python floats with int32 counters, which conftest's strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        result = run.main(["--repeats", "1", "--steps", "2", "--step-calls", "2", "--eager-steps", "0",
                           "--only", "jaxnn autodiff", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "lenet_epoch.json").read_text())
    assert saved["rows"] == result["rows"]
    names = [r["name"] for r in saved["rows"]]
    assert names == ["step/jaxnn autodiff", "step/jaxnn manual", "epoch/jaxnn autodiff"]
    for row in saved["rows"]:
        assert row["median"] > 0 and row["min"] <= row["median"] <= row["max"]
    assert saved["rows"][2]["ratio_vs_autodiff"] == 1.0
    assert saved["machine"]["cores"] >= 1 and saved["versions"]["jax"]
    assert "| epoch/jaxnn autodiff (s/epoch) |" in (tmp_path / "lenet_epoch.md").read_text()
