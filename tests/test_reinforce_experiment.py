"""experiments.reward.reinforce end to end on tiny settings, and its command-line errors."""

import json

import jax
import pytest

from experiments.reward import reinforce


@pytest.fixture(autouse=True)
def standard_promotion():
    """optax's Adam mixes int32 step counts with floats, which strict promotion rejects."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def test_bandit_run_writes_summary_and_figure(tmp_path, capsys):
    out = tmp_path / "bandit"
    argv = ["--env", "bandit", "--out", str(out), "--problems", "8", "--chunk", "10",
            "--epochs", "1", "--steps", "2", "--no-progress"]
    assert reinforce.main(argv) == 0
    summary = json.loads((out / "summary.json").read_text())
    agents = summary["runs"]["reinforce_seed0"]["agents"]
    assert set(agents) == {"random", "greedy", "eps_greedy_0.1", "reinforce_lr0.1"}
    assert (out / "curves.png").stat().st_size > 0
    assert (out / "reinforce_seed0" / "metrics.csv").exists()
    assert reinforce.main(argv + ["--resume"]) == 0  # nothing left to run, same summary


def test_decision_runs_both_learning_rules(tmp_path):
    out = tmp_path / "decision"
    small = (("batch", 4), ("epochs", 1), ("eval_trials", 16), ("hidden", 8), ("steps", 2))
    reinforce.train_and_evaluate(reinforce.Config("decision", str(out), overrides=small,
                                                  progress=False, plots=False))
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["trials_to_criterion"]) == {"supervised", "reinforce"}
    assert {r["method"] for r in summary["runs"].values()} == {"supervised", "reinforce"}


@pytest.mark.parametrize("argv, words", [
    (["--env", "bandit", "--out", "{tmp}/x", "--batch", "4"], "does not apply"),
    (["--env", "cartpole", "--out", "{tmp}/x", "--batch", "1"], "at least 2"),
    (["--env", "cartpole", "--out", "{tmp}/x", "--gamma", "1.5"], "at most 1"),
    (["--env", "cartpole", "--out", "{tmp}/x", "--lr", "-1"], "positive"),
    (["--env", "decision", "--out", "{tmp}/x", "--seeds", "0"], "--seeds"),
    (["--env", "bandit", "--out", "{tmp}/x", "--seed", "-1"], "--seed"),
])
def test_bad_arguments_are_one_line_and_exit_2(tmp_path, capsys, argv, words):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert reinforce.cli_main(reinforce.main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and words in err
    assert not (tmp_path / "x").exists()  # validated before any file is written


def test_existing_output_is_refused(tmp_path, capsys):
    run_dir = tmp_path / "x" / "reinforce_seed0" / "checkpoints"
    run_dir.mkdir(parents=True)
    (run_dir / "step_00000001.ckpt").write_bytes(b"")
    assert reinforce.cli_main(reinforce.main, ["--env", "bandit", "--out", str(tmp_path / "x")]) == 2
    assert "--resume" in capsys.readouterr().err
