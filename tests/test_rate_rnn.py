"""The rate-network experiment end to end on a tiny configuration, and its one-line CLI errors."""

import json

import jax
import pytest

from experiments.common.loop import cli_main
from experiments.rate import rate_rnn


@pytest.fixture(autouse=True)
def _standard_promotion():
    # optax's Adam mixes int32 step counts with floats, which strict promotion rejects.
    with jax.numpy_dtype_promotion("standard"):
        yield


TINY = ["--hidden", "8", "--epochs", "1", "--steps-per-epoch", "2", "--batch", "4",
        "--eval-trials", "8", "--no-progress"]


def test_tiny_run_writes_summary_and_plots(tmp_path, capsys):
    out = tmp_path / "pd"
    assert cli_main(rate_rnn.main, ["--task", "perceptual_decision", "--out", str(out), *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == "perceptual_decision" and summary["goal"] == 0.85
    assert 0.0 <= summary["final_performance"] <= 1.0
    for name in ("curves", "trials", "psychometric", "rates", "weights"):
        assert (out / "plots" / f"{name}.png").stat().st_size > 0
    assert cli_main(rate_rnn.main, ["--task", "perceptual_decision", "--out", str(out), *TINY]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_bad_options_are_one_line_errors(tmp_path, capsys):
    assert cli_main(rate_rnn.main, ["--task", "sine_generation", "--out", str(tmp_path / "s"),
                                    "--dt", "200", *TINY]) == 2
    assert "0 < --dt <= --tau" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
