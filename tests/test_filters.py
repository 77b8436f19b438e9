"""experiments.lenet.filters: the curve detector as printed, convolution through jaxnn.Conv2D against
loops in NumPy, correlation matching, and the whole command on real MNIST."""

import json
import os

import jax
import numpy as np
import pytest

from experiments import train_lenet
from experiments.common.loop import cli_main
from experiments.lenet import filters, filters_plots
from jaxnn import data as jdata
from tests._cli import assert_one_line_usage_error


def test_curve_filter_is_exactly_as_printed():
    printed = ["0 0 0 0 0 30 0", "0 0 0 0 30 0 0"] + ["0 0 0 30 0 0 0"] * 4 + ["0 0 0 0 0 0 0"]
    assert [" ".join(str(int(v)) for v in row) for row in filters.CURVE_FILTER] == printed
    assert filters.CURVE_FILTER.shape == (7, 7)


def test_activation_maps_are_the_correlation_written_out():
    rng = np.random.default_rng(0)
    images, kernel = rng.random((3, 12, 11)).astype(np.float32), rng.normal(size=(7, 5)).astype(np.float32)
    expected = np.array([[[np.sum(im[i:i + 7, j:j + 5] * kernel) for j in range(7)] for i in range(6)]
                         for im in images])
    np.testing.assert_allclose(filters.activation_maps(kernel, images, batch=2), expected, rtol=1e-5, atol=1e-5)


def test_preferred_stimulus_gives_the_largest_response():
    stimulus = filters.curve_stimulus()[None]
    maps = filters.activation_maps(filters.CURVE_FILTER, stimulus)
    assert maps.max() == pytest.approx(filters.CURVE_FILTER.sum())        # 6 taps · 30 · ink 1.0
    cosine = filters.normalised_maps(filters.CURVE_FILTER, stimulus, maps)
    assert cosine.max() == pytest.approx(1.0, abs=1e-6)
    assert np.unravel_index(cosine.argmax(), cosine.shape[1:]) == (10, 10)  # where it was drawn


def test_best_match_by_correlation_with_sign():
    edges = filters.EDGE_FILTERS
    noise = np.random.default_rng(1).normal(scale=0.05, size=(5, 5))
    learned = np.stack([3 * edges["vertical"], -edges["horizontal"], edges["diagonal ↗"] + noise],
                       axis=-1)[:, :, None, :]
    corr, matches = filters.best_matches(learned, edges)
    assert corr.shape == (3, 4)
    assert [m["best"] for m in matches] == ["vertical", "horizontal", "diagonal ↗"]
    assert matches[0]["r"] == pytest.approx(1.0) and matches[1]["r"] == pytest.approx(-1.0)


def test_slide_positions_include_the_peak_in_raster_order():
    positions = filters_plots.slide_positions((22, 22), (13, 4))
    assert len(positions) == 6 and (13, 4) in positions
    assert positions == sorted(positions) and positions[0] == (0, 0) and positions[-1] == (21, 21)


@pytest.mark.parametrize("argv, message", [
    (["--out", "x", "--lenet", "/nonexistent/run"], "no such run folder"),
    (["--out", "x", "--lenet-epochs", "0"], "--lenet-epochs must be ≥ 1"),
    (["--out", "x", "--test-subset", "5"], "--test-subset must be ≥ 20"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, message, capsys):
    assert_one_line_usage_error(filters.main, argv, message, capsys)


@pytest.mark.realdata
def test_the_whole_command_on_real_mnist(tmp_path):
    if not os.environ.get(jdata.ENV_VAR):
        pytest.skip(f"{jdata.ENV_VAR} is unset: needs the real MNIST files")
    run_dir = tmp_path / "lenet"
    with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 step counts with floats
        train_lenet.train_and_evaluate(train_lenet.Config(
            epochs=1, train_subset=128, test_subset=100, eval_train=False, out=str(run_dir),
            plots=False, progress=False))
    out = tmp_path / "filters"
    assert filters.main(["--out", str(out), "--lenet", str(run_dir), "--test-subset", "500"]) == 0
    for name in ("curve_filter", "curve_slide", "curve_extremes", "edges_vs_conv1", "conv1_on_curve"):
        assert (out / f"{name}.png").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["conv1_best_match"]) == 6 and len(summary["conv1_on_curve_stimulus"]) == 6
    assert summary["curve_on_digit"]["max"] <= summary["curve_on_digit"]["max_possible"] == 180
    assert len(summary["test_digits_most"]) == 10
    assert summary["test_digits_most"][0]["peak_cosine"] >= summary["test_digits_least"][0]["peak_cosine"]
    assert cli_main(filters.main, ["--out", str(out), "--lenet", str(out)]) == 2
