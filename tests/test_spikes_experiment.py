"""experiments.rate.spikes: the figure, summary.json, one-line errors."""

import json

import pytest

from experiments.rate import spikes as experiment
from tests._cli import assert_one_line_usage_error


def test_writes_figures_and_summary(tmp_path):
    out = tmp_path / "spikes"
    assert experiment.main(["--out", str(out), "--trials", "5", "--neurons", "20", "--seconds", "6"]) == 0
    assert (out / "spikes.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert [r["window_s"] for r in summary["window_error"]] == list(experiment.WINDOWS)
    assert all(0.8 < r["ratio"] < 1.2 for r in summary["window_error"][:5])  # short windows: many samples
    assert -0.6 < summary["fitted_slope"] < -0.4
    assert summary["raster"]["spikes_per_train_mean"] == pytest.approx(
        summary["raster"]["expected_per_train"], rel=0.25)


@pytest.mark.parametrize("argv, message", [
    (["--out", "x", "--seconds", "2"], "--seconds must exceed"),
    (["--out", "x", "--rate", "1000"], "--rate must lie in"),
    (["--out", "x", "--trials", "0"], "--trials must be ≥ 1"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys):
    assert_one_line_usage_error(experiment.main, argv, message, capsys)
