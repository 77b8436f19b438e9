"""Faults: a training run SIGKILLed at ten moments (mid-epoch, right after a checkpoint, mid
checkpoint write, mid rename) and resumed each time ends byte for byte where the uninterrupted
run ends; a second run on the same --out refuses, naming the first; SIGTERM says where the run
stopped and how to resume it; a full disk or a folder turning read-only mid-run is one line and
keeps the last checkpoint; a NaN stops the run (or is skipped and counted); every user mistake
on the command line is one line on stderr and exit status 2, before any data is read or
directory made."""

import contextlib
import errno
import io
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import train_lenet
from experiments.common import loop
from jaxnn import data as jdata
from jaxnn.train import checkpoint
from tests._files import FileWrapper

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


def _bytes(out):
    """Every checkpoint's bytes, and the metrics without their timing columns."""
    ckpt = out / "checkpoints"
    return ({name: (ckpt / name).read_bytes() for name in sorted(os.listdir(ckpt))}, _metrics(out))


def _wait_for_line(path, prefix, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.is_alive():
        if path.exists() and any(line.startswith(prefix) for line in path.read_text().splitlines()):
            return True
        time.sleep(0.02)
    return False


def test_sigkill_at_ten_moments_each_resumed_ends_on_the_uninterrupted_bytes(tmp_path):
    """One toy run (10 epochs × 4 batches; per epoch 10 events: 4 batches taken, metrics.csv
    renamed, 4 checkpoint writes, the checkpoint renamed) killed ten times, each kill resumed:
    mid-epoch 1 (no checkpoint yet), mid-write of checkpoint 1 (a partial file left), right after
    the first checkpoint, between metrics.csv and its checkpoint; then a run paused in each batch:
    a second run on the same --out refuses naming it, and SIGTERM stops it in one line naming
    the last checkpoint and the command that resumes; then six seeded random events. The last
    resume ends on the uninterrupted run's bytes: every checkpoint, every metric."""
    from tests._fault_child import start_toy

    straight, crashed, logs = tmp_path / "straight", tmp_path / "crashed", tmp_path / "logs"
    logs.mkdir()
    epochs = ["--epochs", "10"]
    reference = start_toy(["--out", str(straight), *epochs], logs / "reference")
    rng = np.random.default_rng(19)
    moments = [3, 8, 12, 6, "pause"] + [int(k) for k in rng.integers(1, 17, 6)]
    for i, k in enumerate(moments):
        args = ["--out", str(crashed), *epochs]
        if crashed.exists() and loop.cli.holds_run(crashed):
            args.append("--resume")
        log = logs / f"run{i}"
        if k != "pause":
            proc = start_toy([*args, "--die-at", str(k)], log)
            proc.join(60)
            assert proc.exitcode == -signal.SIGKILL, (i, k, (logs / f"run{i}.err").read_text())
            continue
        proc = start_toy([*args, "--sleep", "0.15"], log)
        assert _wait_for_line(logs / f"run{i}.out", "toy epoch", proc)
        # A second run on the same --out, while this one runs: refused, naming it.
        with contextlib.redirect_stderr(io.StringIO()) as second:
            assert loop.cli_main(train_lenet.main, ["--out", str(crashed), "--resume"]) == 2
        assert f"is in use by another run (pid {proc.pid} on " in second.getvalue()
        proc.terminate()                                     # SIGTERM
        proc.join(60)
        assert proc.exitcode == 128 + signal.SIGTERM
        err = (logs / f"run{i}.err").read_text().strip().splitlines()
        assert len(err) == 1 and err[0].startswith("terminated (SIGTERM): stopped "), err
        assert "last checkpoint epoch " in err[0] and err[0].endswith(
            f"resume with: python -m tests._fault_child toy {shlex.join(args)} --sleep 0.15"), err
    reference.join(60)
    assert reference.exitcode == 0

    proc = start_toy(["--out", str(crashed), *epochs, "--resume"], logs / "last")
    proc.join(60)
    assert proc.exitcode == 0, (logs / "last.err").read_text()
    assert _bytes(crashed) == _bytes(straight)
    assert len(_bytes(crashed)[0]) == 10
    leftovers = [p for d in (crashed, crashed / "checkpoints") for p in os.listdir(d) if p.endswith(".tmp")]
    assert leftovers == []


def test_a_second_run_on_the_same_out_refuses_naming_the_holder(tmp_path, capsys):
    """In one process: the lock taken by another open file (as another process would)."""
    import fcntl

    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242 on elsewhere: python -m experiments.train_lenet --out run\n")
        held.flush()
        code, err = _cli(["--out", str(out)], capsys)
    assert code == 2 and err == [f"error: {out} is in use by another run (pid 4242 on elsewhere: "
                                 f"python -m experiments.train_lenet --out run); wait for it to end "
                                 f"or choose another --out"]
    # Released (the holder ended): the folder is free again, and what it held is kept.
    assert os.listdir(out) == [".lock"]


def _toy_cli(tmp_path, epochs=2, resume=False):
    return loop.cli_main(lambda argv: _toy_run(tmp_path, "stop", bad=None, epochs=epochs,
                                               resume=resume) and 0)


class _NoSpace(FileWrapper):
    """A file whose writes fail with ENOSPC."""

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_full_disk_at_the_start_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **kw: _NoSpace(real_fdopen(fd, *a, **kw)))
    assert _toy_cli(tmp_path) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'toy' / 'config.json'}: No space left on device"]
    assert not (tmp_path / "toy").exists()          # no stray temporary file, no folder


def test_a_disk_filling_up_mid_run_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    calls = {"n": 0}
    real_fdopen = os.fdopen

    def filling(fd, *a, **kw):       # config.json, metrics 1 fit; then the disk is full
        calls["n"] += 1
        f = real_fdopen(fd, *a, **kw)
        return f if calls["n"] <= 2 else _NoSpace(f)

    monkeypatch.setattr(os, "fdopen", filling)
    assert _toy_cli(tmp_path, epochs=3) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'toy' / 'metrics.csv'}: No space left on device"]
    ckpt = checkpoint.Checkpoints(tmp_path / "toy" / "checkpoints")
    assert ckpt.steps() == [1]
    assert [p for p in os.listdir(tmp_path / "toy") if p.endswith(".tmp")] == []
    monkeypatch.undo()
    assert _toy_cli(tmp_path, epochs=3, resume=True) == 0
    assert ckpt.steps() == [2, 3]


def test_the_folder_turning_read_only_mid_run_simulated(tmp_path, monkeypatch, capsys):
    """Any user: every new file in the run folder fails with EROFS after epoch 1."""
    _toy_run(tmp_path, "stop", bad=None, epochs=1)
    real_mkstemp = loop.tempfile.mkstemp

    def read_only(*a, **kw):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), kw.get("dir"))

    monkeypatch.setattr(loop.tempfile, "mkstemp", read_only)
    monkeypatch.setattr(checkpoint, "open", lambda p, mode: read_only(dir=p), raising=False)
    assert _toy_cli(tmp_path, epochs=2, resume=True) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'toy' / 'config.json'}: Read-only file system"]
    monkeypatch.setattr(loop.tempfile, "mkstemp", real_mkstemp)
    assert checkpoint.Checkpoints(tmp_path / "toy" / "checkpoints").steps() == [1]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders: the permission "
                                              "is not enforced (the simulated test above runs)")
def test_the_folder_turning_read_only_mid_run(tmp_path, capsys):
    out = tmp_path / "toy"

    @jax.jit
    def step(state, x, key):
        return {"w": state["w"] + x}, {"loss": jnp.sum(state["w"])}

    def batches(epoch):
        if epoch == 2:
            for d in (out, out / "checkpoints"):
                os.chmod(d, 0o555)
        return [jnp.ones(3)] * 2

    def main(argv):
        loop.run(loop.LoopConfig(out=str(out), epochs=3, progress=False, plots=False),
                 init=lambda: {"w": jnp.zeros(3)}, step=step, batches=batches, name="toy")
        return 0

    try:
        assert loop.cli_main(main) == 2
    finally:
        for d in (out, out / "checkpoints"):
            os.chmod(d, 0o755)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Permission denied" in err[0]
    assert checkpoint.Checkpoints(out / "checkpoints").steps() == [1]
    assert [p for d in (out, out / "checkpoints") for p in os.listdir(d) if p.endswith(".tmp")] == []


def test_ctrl_c_says_where_the_run_stopped_and_how_to_resume(tmp_path, capsys):
    @jax.jit
    def step(state, x, key):
        return {"w": state["w"] + x}, {"loss": jnp.sum(state["w"])}

    def batches(epoch):
        if epoch == 2:
            raise KeyboardInterrupt
        return [jnp.ones(3)] * 2

    def main(argv):
        p = loop.cli.parser("python -m x")
        p.add_argument("--out")
        p.add_argument("--resume", action="store_true")
        args = p.parse_args(argv)
        out = loop.cli.claim_out(args.out, resume=args.resume)
        loop.run(loop.LoopConfig(out=str(out), epochs=3, progress=False, plots=False),
                 init=lambda: {"w": jnp.zeros(3)}, step=step, batches=batches, name="toy")
        return 0

    out = tmp_path / "toy"
    assert loop.cli_main(main, ["--out", str(out)]) == 130
    err = capsys.readouterr().err.strip().splitlines()
    ckpt = out / "checkpoints" / "step_00000001.ckpt"
    assert len(err) == 1 and err[0].startswith(f"interrupted (Ctrl-C): stopped during epoch 2, in "
                                               f"{out}, last checkpoint epoch 1 ({ckpt}); resume "
                                               f"with: python -m "), err
    assert err[0].endswith(f"--out {out} --resume")
    assert ckpt.exists()


def _metrics(out):
    return [{k: v for k, v in row.items() if k not in TIMING}
            for row in loop.read_metrics(out / "metrics.csv")]


@pytest.mark.realdata
def test_sigkill_mid_checkpoint_write_then_resume_is_exact(tmp_path, data_dir):
    """LeNet-5 "bn" through experiments.train_lenet: the state to restore includes BatchNorm's
    running statistics, and Dropout draws from the step keys. (Kills at other moments: the toy
    run above.)"""
    straight, crashed = tmp_path / "straight", tmp_path / "crashed"
    common = [*SMALL, "--variant", "bn", "--data-dir", data_dir]
    cache = tmp_path / "jax-cache"

    # 1. SIGKILL in the middle of writing checkpoint 2 (part of it on disk).
    run = _start(["2", *common, "--out", str(crashed)], module="tests._fault_child", cache=cache)
    assert run.wait(timeout=300) == -signal.SIGKILL, run.stderr.read()
    ckpt = checkpoint.Checkpoints(crashed / "checkpoints")
    partial = [p for p in os.listdir(ckpt.directory) if p.endswith(".tmp")]
    assert ckpt.steps() == [1] and len(partial) == 1

    # 2. Resume to the end, beside the uninterrupted run.
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
    (["--epochs", "0"], "error: --epochs must be positive, got 0"),
    (["--optimizer", "adamx"], "error: --optimizer must be one of adam, adamw, sgd, momentum; got 'adamx'"),
    (["--on-nan", "ignore"], "error: --on-nan must be one of stop, skip, got 'ignore'"),
    (["--lr", "-1"], "error: --lr must be positive, got -1.0"),
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
