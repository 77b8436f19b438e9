"""Every command's command line: a bad value of any checked flag is one line on stderr, exit
status 2, and nothing made in --out (a property over generated values, every command driven
in-process through `cli_main`); --out that is a file, holds another run, or holds nothing to
resume is refused the same way; OS errors are one line naming the path; files written are
as readable as any new file; a process removes only its own temporary files."""

import errno
import os
import stat

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments import train_lenet
from experiments.backprop import compare_backprop, curve_agreement, own_layer
from experiments.common import cli, launch, loop
from experiments.credit import credit_assignment
from experiments.lenet import filters, lenet_table
from experiments.rate import rate_rnn, rate_rnn_table, spikes
from experiments.reward import reinforce
from experiments.rules import hebbian, perceptron
from experiments.vision import visual_hierarchy

P_INT, NN_INT, SEED, P_FLOAT, NN_FLOAT = "positive int", "non-negative int", "seed", "positive float", \
    "non-negative float"

# command: (main, argv before the flag, {flag: kind}); every flag's value is checked before --out
COMMANDS = {
    "train_lenet": (train_lenet.main, [], {
        "--epochs": P_INT, "--batch-size": P_INT, "--lr": P_FLOAT, "--weight-decay": NN_FLOAT,
        "--max-shift": NN_INT, "--seed": SEED, "--train-subset": P_INT, "--test-subset": P_INT,
        "--eval-batch-size": P_INT, "--devices": P_INT, "--num-processes": P_INT, "--process-id": NN_INT}),
    "lenet.filters": (filters.main, [], {"--digit": NN_INT, "--lenet-epochs": P_INT,
                                         "--test-subset": P_INT}),
    "lenet.lenet_table": (lenet_table.main, [], {"--seeds": SEED, "--max-shift": NN_INT}),
    "backprop.compare_backprop": (compare_backprop.cli, [], {"--repeats": P_INT}),
    "backprop.curve_agreement": (curve_agreement.main, [], {"--steps": P_INT, "--batch-size": P_INT,
                                                            "--seed": SEED}),
    "backprop.own_layer": (own_layer.main, [], {"--epochs": P_INT, "--batch-size": P_INT,
                                                "--lr": P_FLOAT, "--train-subset": P_INT,
                                                "--seed": SEED}),
    "rules.perceptron": (perceptron.main, [], {
        "--epochs": P_INT, "--chunk": P_INT, "--gd-batch": P_INT, "--gd-lr": P_FLOAT, "--seed": SEED,
        "--train-subset": P_INT, "--test-subset": P_INT}),
    "rules.hebbian": (hebbian.main, [], {
        "--units": P_INT, "--epochs": P_INT, "--readout-epochs": P_INT, "--lr": P_FLOAT,
        "--batch": P_INT, "--power": P_FLOAT, "--clusters": P_INT, "--seed": SEED,
        "--train-subset": P_INT, "--test-subset": P_INT}),
    "rate.rate_rnn": (rate_rnn.main, ["--task", "perceptual_decision"], {
        "--seed": SEED, "--hidden": P_INT, "--epochs": P_INT, "--steps-per-epoch": P_INT,
        "--batch": P_INT, "--lr": P_FLOAT, "--noise": NN_FLOAT, "--rec-gain": P_FLOAT,
        "--connectivity": P_FLOAT, "--tau": P_FLOAT, "--dt": P_FLOAT, "--eval-trials": P_INT}),
    "rate.rate_rnn_table": (rate_rnn_table.main, [], {"--seeds": P_INT}),
    "rate.spikes": (spikes.main, [], {"--seed": SEED, "--trials": P_INT, "--neurons": P_INT,
                                      "--rate": P_FLOAT, "--seconds": P_FLOAT}),
    "reward.reinforce": (reinforce.main, ["--env", "cartpole"], {
        "--seed": SEED, "--seeds": P_INT, "--epochs": P_INT, "--batch": P_INT, "--hidden": P_INT,
        "--lr": P_FLOAT, "--gamma": P_FLOAT}),
    "vision.visual_hierarchy": (visual_hierarchy.main, [], {"--seed": SEED}),
    "credit.credit_assignment": (credit_assignment.main, [], {
        "--seeds": SEED, "--epochs": P_INT, "--holdout": P_INT, "--train-subset": P_INT,
        "--test-subset": P_INT, "--tune-grid": P_FLOAT, "--tune-epochs": P_INT,
        "--output-scale": NN_FLOAT, "--max-shift": NN_INT, "--weight-decay": NN_FLOAT}),
    "common.launch": (launch.main, [], {"--num-processes": P_INT, "--devices-per-process": P_INT,
                                        "--timeout": P_FLOAT, "--port": P_INT}),
}

_not_a_number = st.sampled_from(["", "abc", "1e", "0x10", "--", "1,5", "½", "nan%"])
_non_finite = st.sampled_from(["nan", "inf", "-inf", "NaN", "1e999", "-1e999"])
BAD = {
    P_INT: st.one_of(st.integers(max_value=0).map(str), _not_a_number, _non_finite,
                     st.floats(0.1, 1e6).filter(lambda v: v != int(v)).map(repr)),
    NN_INT: st.one_of(st.integers(max_value=-1).map(str), _not_a_number, _non_finite,
                      st.floats(0.1, 1e6).filter(lambda v: v != int(v)).map(repr)),
    SEED: st.one_of(st.integers(max_value=-1).map(str), st.integers(min_value=2 ** 32).map(str),
                    _not_a_number, _non_finite),
    P_FLOAT: st.one_of(st.floats(max_value=0.0).map(repr), _not_a_number, _non_finite),
    NN_FLOAT: st.one_of(st.floats(max_value=-1e-300).map(repr), _not_a_number, _non_finite),
}


def _bad_arguments(name):
    main, base, flags = COMMANDS[name]
    return st.sampled_from(sorted(flags)).flatmap(
        lambda flag: st.tuples(st.just(flag), BAD[flags[flag]]))


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_bad_value_of_every_command_is_one_line_exit_2_and_nothing_made(name, tmp_path_factory):
    main, base, flags = COMMANDS[name]
    root = tmp_path_factory.mktemp(name)

    @settings(max_examples=12, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(_bad_arguments(name))
    def check(bad):
        flag, value = bad
        out = root / "out"
        tail = ["--", "true"] if name == "common.launch" else ["--out", str(out)]
        argv = [*base, f"{flag}={value}", *tail]
        err = _run(main, argv)
        assert err.count("\n") == 1 and err.startswith("error: "), (argv, err)
        assert flag in err, (argv, err)      # the message names the flag it refuses
        assert not out.exists()

    check()


def _run(main, argv):
    import contextlib
    import io

    with contextlib.redirect_stderr(io.StringIO()) as err, contextlib.redirect_stdout(io.StringIO()):
        assert cli.cli_main(main, argv) == 2, argv
    return err.getvalue()


# ------------------------------------------------------------------ --out
RESUMABLE = [("train_lenet", train_lenet.main, []),
             ("rules.perceptron", perceptron.main, []),
             ("rate.rate_rnn", rate_rnn.main, ["--task", "perceptual_decision"]),
             ("reward.reinforce", reinforce.main, ["--env", "bandit"]),
             ("backprop.own_layer", own_layer.main, [])]


@pytest.mark.parametrize("name, main, base", RESUMABLE, ids=[r[0] for r in RESUMABLE])
def test_out_checks_before_any_compute(name, main, base, tmp_path):
    # --resume on a mistyped --out: refused, nothing made.
    missing = tmp_path / "typo"
    assert _run(main, [*base, "--out", str(missing), "--resume"]) == (
        f"error: --resume: {missing} holds no run to resume; check the path, or drop --resume to "
        f"start a new run\n")
    assert not missing.exists()
    # An --out holding another run's files: refused unless --resume, and left as it was.
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "config.json").write_text("{}")
    assert _run(main, [*base, "--out", str(taken)]) == (
        f"error: {taken} already holds a run; pass --resume to continue it or choose another --out\n")
    assert os.listdir(taken) == ["config.json"]
    # An --out that is a file, or lies under one.
    afile = tmp_path / "file"
    afile.write_text("x")
    assert _run(main, [*base, "--out", str(afile)]) == (
        f"error: --out {afile} exists and is not a directory\n")
    assert _run(main, [*base, "--out", str(afile / "sub")]) == (
        f"error: --out {afile / 'sub'}: {afile} is not a directory\n")
    assert afile.read_text() == "x"


def test_a_command_that_does_not_resume_never_overwrites(tmp_path):
    (tmp_path / "summary.json").write_text("{}")
    assert _run(spikes.main, ["--out", str(tmp_path)]) == (
        f"error: {tmp_path} already holds a run; choose another --out (this command does not "
        f"resume, and never overwrites a run)\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any folder: permissions are "
                                              "not enforced")
def test_an_out_in_a_read_only_folder(tmp_path):
    tmp_path.chmod(0o555)
    try:
        err = _run(train_lenet.main, ["--out", str(tmp_path / "run")])
    finally:
        tmp_path.chmod(0o755)
    assert err == f"error: --out {tmp_path / 'run'}: cannot be made in {tmp_path} (Permission denied)\n"


def test_os_errors_are_one_line_naming_the_path(tmp_path):
    def main(argv):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(tmp_path / "x"))

    assert _run(main, []) == f"error: {tmp_path / 'x'}: Permission denied\n"

    def no_name(argv):
        raise OSError(errno.EIO, "Input/output error\nwith a second line")

    assert _run(no_name, []) == "error: Input/output error with a second line\n"


def test_the_lock_is_released_and_an_empty_out_removed_after_an_error(tmp_path):
    out = tmp_path / "a" / "b"

    def main(argv):
        cli.claim_out(out)
        raise cli.UsageError("a data-dependent check failed")

    assert _run(main, []) == "error: a data-dependent check failed\n"
    assert not (tmp_path / "a").exists()

    def ok(argv):
        cli.claim_out(out)
        loop.write_atomic(out / "result.txt", "done\n")
        return 0

    assert cli.cli_main(ok, []) == 0
    assert sorted(os.listdir(out)) == [".lock", "result.txt"]
    assert (out / ".lock").read_text().startswith(f"pid {os.getpid()} on ")
    assert _run(ok, []) == (f"error: {out} already holds a run; choose another --out (this command "
                            f"does not resume, and never overwrites a run)\n")


def test_written_files_are_as_readable_as_any_new_file(tmp_path):
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1, 1))
    old = os.umask(0o027)
    try:
        loop.write_atomic(tmp_path / "a.json", "{}\n")
        loop.save_figure(fig, tmp_path / "a.png", dpi=20)
        (tmp_path / "plain").write_text("")
    finally:
        os.umask(old)
        plt.close(fig)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "a.png").stat().st_mode) == 0o640
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(os.listdir(tmp_path)) == ["a.json", "a.png", "plain"]
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_only_temporary_files_of_finished_processes_are_removed(tmp_path):
    import jax.numpy as jnp

    from jaxnn.train.checkpoint import Checkpoints

    dead = 2 ** 22 + 12345          # above the default pid_max: no such process
    while loop.pid_alive(dead):
        dead += 1
    mine_running = f".metrics.csv.{os.getppid()}.abc123.tmp"          # a live process's
    stale = f".metrics.csv.{dead}.abc123.tmp"
    for name in (mine_running, stale):
        (tmp_path / name).write_text("partial")
    loop.write_atomic(tmp_path / "metrics.csv", "epoch\n1\n")
    assert sorted(os.listdir(tmp_path)) == sorted([mine_running, "metrics.csv"])

    ckpt = Checkpoints(tmp_path / "ckpt")
    ckpt.directory.mkdir()
    live, gone = (f".step_00000002.ckpt.{os.getppid()}.tmp", f".step_00000002.ckpt.{dead}.tmp")
    for name in (live, gone):
        (ckpt.directory / name).write_bytes(b"partial")
    ckpt.save(1, {"w": jnp.zeros(2)})
    assert sorted(os.listdir(ckpt.directory)) == sorted([live, "step_00000001.ckpt"])


def test_print_table_draws_pairs_and_dicts_as_aligned_markdown():
    import io

    text = io.StringIO()
    cli.print_table("pairs", [("accuracy", "92.10 %"), ("a|b", "3")], file=text)
    cli.print_table("dicts", [{"agent": "greedy", "regret": 12.5}, {"agent": "random"}], file=text)
    assert text.getvalue().splitlines() == [
        "pairs",
        "| what     | value   |",
        "|----------|---------|",
        "| accuracy | 92.10 % |",
        "| a\\|b     | 3       |",
        "dicts",
        "| agent  | regret |",
        "|--------|--------|",
        "| greedy | 12.5   |",
        "| random |        |"]
    with pytest.raises(TypeError, match="pairs or dicts"):
        cli.print_table("mixed", [("a", "1"), {"b": 2}], file=text)
