"""Faults: a training run SIGKILLed mid-epoch and again mid-checkpoint-write resumes to exactly the
uninterrupted run; a NaN stops the run (or is skipped and counted); every user mistake on the
command line is one line on stderr and exit status 2, before any data is read or directory made."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.common import loop
from experiments import train_lenet
from jaxnn.train import checkpoint
from jaxnn import data as jdata

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--train-subset", "192", "--test-subset", "32", "--batch-size", "32", "--epochs", "2",
         "--no-plots", "--no-progress", "--no-eval-train", "--eval-batch-size", "32"]
TIMING = ("epoch_seconds", "steps_per_second")


@pytest.fixture
def data_dir():
    d = os.environ.get(jdata.ENV_VAR)
    if not d or not os.path.exists(os.path.join(d, "train-images-idx3-ubyte.gz")):
        pytest.skip("set JAXNN_DATA_DIR to a directory with the MNIST IDX files to run this test")
    return d


def _start(args, module="experiments.train_lenet", cache=None):
    """The command in a fresh process; `cache`: a folder for JAX's persistent compilation cache,
    so that processes after the first load the compiled steps instead of compiling them again."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    if cache is not None:
        env.update(JAX_COMPILATION_CACHE_DIR=str(cache), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _metrics(out):
    return [{k: v for k, v in row.items() if k not in TIMING}
            for row in loop.read_metrics(out / "metrics.csv")]


@pytest.mark.realdata
def test_sigkill_mid_epoch_and_mid_checkpoint_write_then_resume_is_exact(tmp_path, data_dir):
    """LeNet-5 "bn": the state to restore includes BatchNorm's running statistics, and Dropout
    draws from the step keys."""
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    common = [*SMALL, "--variant", "bn", "--data-dir", data_dir]

    cache = tmp_path / "jax-cache"

    # 1. SIGKILL during epoch 2: its line for epoch 1 is printed after checkpoint 1 is durable.
    run = _start([*common, "--out", str(crashed)], cache=cache)
    for line in run.stdout:
        if line.startswith("lenet5-bn epoch   1"):
            run.send_signal(signal.SIGKILL)
            break
    assert run.wait(timeout=300) == -signal.SIGKILL
    ckpt = checkpoint.Checkpoints(crashed / "checkpoints")
    assert ckpt.steps() == [1]

    # 2. Resume, and SIGKILL in the middle of writing checkpoint 2 (part of it on disk).
    run = _start(["2", *common, "--out", str(crashed), "--resume"], module="tests._fault_child",
                 cache=cache)
    assert run.wait(timeout=300) == -signal.SIGKILL, run.stderr.read()
    partial = [p for p in os.listdir(ckpt.directory) if p.endswith(".tmp")]
    assert ckpt.steps() == [1] and len(partial) == 1

    # 3. Resume to the end, beside the uninterrupted run.
    resumed = _start([*common, "--out", str(crashed), "--resume"], cache=cache)
    reference = _start([*common, "--out", str(straight)], cache=cache)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "resumed from" in out and "at epoch 1" in out
    assert reference.wait(timeout=300) == 0, reference.stderr.read()

    assert [r["epoch"] for r in _metrics(crashed)] == [1, 2]
    assert _metrics(crashed) == _metrics(straight)
    assert sorted(os.listdir(ckpt.directory)) == ["step_00000001.ckpt", "step_00000002.ckpt"]
    # Same bytes: every parameter, running statistic and optimiser-state value, bit for bit.
    for step in (1, 2):
        assert ckpt.path(step).read_bytes() == (straight / "checkpoints" / ckpt.path(step).name).read_bytes()


# ------------------------------------------------------------------ NaN / Inf in the loop
def _toy_run(tmp_path, on_nan, bad=(2, 1), epochs=3, resume=False):
    """w -= 0.1 · x per batch; batch `bad` = (epoch, step) holds a NaN."""
    @jax.jit
    def step(state, x, key):
        w = state["params"]["w"] - 0.1 * x
        return {"params": {"w": w}, "opt": {"m": state["opt"]["m"] + 1.0}}, {"loss": jnp.sum(w * w)}

    def batches(epoch):
        return [jnp.full(3, np.nan if (epoch, i) == bad else 1.0, jnp.float32) for i in range(4)]

    cfg = loop.LoopConfig(out=str(tmp_path / "toy"), epochs=epochs, progress=False, plots=False,
                          on_nan=on_nan, resume=resume)
    return loop.run(cfg, init=lambda: {"params": {"w": jnp.zeros(3)}, "opt": {"m": jnp.zeros(())}},
                    step=step, batches=batches, name="toy")


def test_a_nan_stops_the_run_naming_step_and_parameter_and_keeps_the_last_checkpoint(tmp_path):
    with pytest.raises(loop.NonFiniteLoss, match=r"^toy: non-finite at epoch 2, step 1: loss nan, "
                                                 r"first non-finite parameter \['params'\]\['w'\]; "
                                                 r"stopped .*last good checkpoint is epoch 1 in "):
        _toy_run(tmp_path, "stop")
    ckpt = checkpoint.Checkpoints(tmp_path / "toy" / "checkpoints")
    assert ckpt.steps() == [1]
    assert np.all(np.isfinite(ckpt.restore_latest({"params": {"w": jnp.zeros(3)},
                                                   "opt": {"m": jnp.zeros(())}})[1]["params"]["w"]))


def _poisoned_state_run(tmp_path, bad):
    """The loss stays finite; at (epoch, step) `bad` the optimiser-state leaf becomes inf."""
    @jax.jit
    def step(state, batch, key):
        x, poison = batch
        w = state["params"]["w"] - 0.1 * x
        return ({"params": {"w": w}, "opt": {"m": state["opt"]["m"] + 1.0 + poison}},
                {"loss": jnp.sum(w * w)})

    def batches(epoch):
        return [(jnp.ones(3, jnp.float32), jnp.float32(np.inf if (epoch, i) == bad else 0.0))
                for i in range(4)]

    cfg = loop.LoopConfig(out=str(tmp_path / "toy"), epochs=3, progress=False, plots=False)
    return loop.run(cfg, init=lambda: {"params": {"w": jnp.zeros(3)}, "opt": {"m": jnp.zeros(())}},
                    step=step, batches=batches, name="toy")


@pytest.mark.parametrize("bad_step", [1, 3])   # mid-epoch, and the epoch's last step
def test_a_state_that_turns_non_finite_under_a_finite_loss_names_that_step(tmp_path, bad_step):
    # The stop-mode check reads each step's starting state: step i's new state is checked by
    # step i + 1, the epoch's last one after the epoch. The report must still name step i.
    with pytest.raises(loop.NonFiniteLoss, match=rf"^toy: non-finite at epoch 2, step {bad_step}: "
                                                 r"loss \d[\d.e+-]*, first non-finite parameter "
                                                 r"\['opt'\]\['m'\]; stopped .*last good checkpoint is "
                                                 r"epoch 1 in "):
        _poisoned_state_run(tmp_path, (2, bad_step))
    assert checkpoint.Checkpoints(tmp_path / "toy" / "checkpoints").steps() == [1]


def test_the_stop_mode_flags_line_up_with_their_steps():
    rows = loop._FiniteRows(lagged=True)
    # Each step reports its loss and the leaves of the state it started from.
    for loss_ok, start_ok in [(True, [True, True]), (True, [True, True]), (True, [False, True])]:
        rows.add([np.array([loss_ok, *start_ok])], {})
    table = rows.table()
    np.testing.assert_array_equal(table, [[True, True, True], [True, False, True], [True, True, True]])
    rows.finish(np.array([False, False]))            # the epoch's last state
    np.testing.assert_array_equal(rows.table()[-1], [True, False, False])


def test_on_nan_skip_skips_the_batch_and_counts_it(tmp_path):
    summary = _toy_run(tmp_path, "skip")
    rows = loop.read_metrics(tmp_path / "toy" / "metrics.csv")
    assert [r["train_skipped"] for r in rows] == [0, 1, 0]
    # 11 of 12 batches applied: w = -1.1 everywhere, and the step counter skipped one too.
    assert summary["final"]["train_loss"] == pytest.approx(np.mean([3 * (0.1 * k) ** 2 for k in range(8, 12)]))
    state = checkpoint.Checkpoints(tmp_path / "toy" / "checkpoints").restore_latest(
        {"params": {"w": jnp.zeros(3)}, "opt": {"m": jnp.zeros(())}})[1]
    np.testing.assert_allclose(state["params"]["w"], -1.1, rtol=1e-6)
    assert float(state["opt"]["m"]) == 11.0


def test_a_failed_checkpoint_write_is_one_line_and_keeps_the_last_good_one(tmp_path, monkeypatch,
                                                                          capsys):
    _toy_run(tmp_path, "stop", bad=None, epochs=1)

    def read_only(path, mode):
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(checkpoint, "open", read_only, raising=False)
    code = loop.cli_main(lambda argv: _toy_run(tmp_path, "stop", bad=None, epochs=2, resume=True))
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write checkpoint" in err[0] and "Read-only file system; kept " \
        "checkpoint" in err[0] and err[0].endswith("step_00000001.ckpt")
    assert checkpoint.Checkpoints(tmp_path / "toy" / "checkpoints").steps() == [1]


# ------------------------------------------------------------------ the command line
def _cli(argv, capsys):
    code = loop.cli_main(train_lenet.main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "error: --epochs must be a positive integer, got 0"),
    (["--optimizer", "adamx"], "error: --optimizer must be one of adam, adamw, sgd, momentum; got 'adamx'"),
    (["--on-nan", "ignore"], "error: --on-nan must be one of stop, skip, got 'ignore'"),
    (["--lr", "-1"], "error: --lr must be a positive number, got -1.0"),
    (["--data-dir", "/nonexistent"], "error: data_dir /nonexistent is not a directory"),
])
def test_bad_arguments_are_one_line_before_any_directory_is_made(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    assert _cli([*argv, "--out", str(out)], capsys) == (2, [message])
    assert not out.exists()


def test_existing_output_is_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    checkpoint.Checkpoints(out / "checkpoints").save(1, {"w": jnp.zeros(3)})
    assert _cli(["--out", str(out)], capsys) == (2, [
        f"error: {out} already holds a run; pass --resume to continue it or choose another --out"])


def test_unusable_checkpoints_are_named_and_the_run_stops_deleting_nothing(tmp_path, capsys):
    _toy_run(tmp_path, "stop", bad=None, epochs=2)
    ckpt = checkpoint.Checkpoints(tmp_path / "toy" / "checkpoints")
    for step in (1, 2):
        ckpt.path(step).write_bytes(ckpt.path(step).read_bytes()[:-5])
    code = loop.cli_main(lambda argv: _toy_run(tmp_path, "stop", bad=None, epochs=3, resume=True))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 3 and all("is truncated" in line for line in err)
    assert err[0].startswith("skipping checkpoint ") and err[0].endswith("step_00000002.ckpt is truncated "
                                                                        "(206 of 211 bytes)")
    assert err[2].startswith("error: no usable checkpoint in ") and "nothing was deleted" in err[2]
    assert ckpt.steps() == [1, 2]


def _fake_data(tmp_path):
    """A data folder whose training images fail their checksum (so no real data is needed)."""
    d = tmp_path / "fake"
    d.mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (d / name).write_bytes(b"\0\0\x08\x01\0\0\0\0")
    return d


def test_corrupt_data_is_one_line(tmp_path, capsys):
    code, err = _cli(["--out", str(tmp_path / "run"), "--data-dir", str(_fake_data(tmp_path))], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and "train-images" in err[0]


@pytest.mark.realdata
def test_a_learning_rate_that_diverges_stops_on_the_first_non_finite_loss(tmp_path, capsys, data_dir):
    with jax.numpy_dtype_promotion("standard"):       # optax mixes int32 step counts with floats
        _diverge(tmp_path, capsys, data_dir)


def _diverge(tmp_path, capsys, data_dir):
    code, err = _cli(["--lr", "1e4", "--optimizer", "sgd", "--out", str(tmp_path / "run"),
                      "--data-dir", data_dir, *SMALL], capsys)
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: lenet5-modern: non-finite at epoch 1, step ")
    assert "first non-finite parameter .params" in err[0] and "no checkpoint had been written" in err[0]
