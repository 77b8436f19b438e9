"""Data parallelism on forced CPU host devices and across processes (jaxnn.train.sharding).

Each multi-device check runs in a subprocess (XLA_FLAGS is read once, when jax starts) with a
wall-clock timeout, and with XLA's collective timeout set, so a stuck all-reduce ends the
child with a message instead of hanging the suite.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxnn
from jaxnn.train import distributed, sharding

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300
TOLERANCE = 1e-5  # float32: sums over a different split of the batch round differently


def run_child(args, *, devices=1, extra_env=None, timeout=TIMEOUT_S):
    env = dict(os.environ, PYTHONPATH=str(ROOT),
               XLA_FLAGS=distributed.host_device_flags(devices, os.environ.get("XLA_FLAGS", "")))
    env.update(extra_env or {})
    try:
        proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{args} did not finish in {timeout} s:\n{(e.stderr or '')[-2000:]}")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_one_two_eight_devices_agree_with_one_device():
    proc = run_child([str(ROOT / "tests" / "_sharding_child.py")], devices=8)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["devices"] == 8
    assert len(report["diffs"]) == 7
    bad = {k: v for k, v in report["diffs"].items() if not v <= TOLERANCE}
    assert not bad, bad
    assert report["split leaves"] == 2
    assert report["indivisible"] == ("a batch of 12 does not split over 8 devices; "
                                     "use a multiple of 8 (e.g. 8 or 16)")
    assert "has state" in report["shard_map with state"]
    assert report["eval"][0] == 0 and report["eval"][1] < 1e-5


def test_two_processes_over_gloo_match_one_process(tmp_path):
    out = tmp_path / "params.npz"
    child = str(ROOT / "tests" / "_multiprocess_child.py")
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.common.launch", "-n", "2", "--timeout", str(TIMEOUT_S - 20),
         "--", sys.executable, child, str(out), "manual"],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True, text=True,
        timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    got = np.load(out)
    assert int(got["devices"]) == 2 and int(got["processes"]) == 2

    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from _multiprocess_child import STEPS, data, setup
    finally:
        sys.path.pop(0)
    model, loss, opt, params = setup()
    train = jaxnn.train_step(model, loss, opt, "manual")
    ts = train.init(params)
    for i in range(STEPS):
        ts, _ = train.step(ts, data(), jax.random.key(i))
    want = jax.tree.leaves(ts.params)
    assert len(want) == len(got.files) - 2
    for i, w in enumerate(want):
        np.testing.assert_allclose(got[f"arr_{i}"], np.asarray(w), rtol=TOLERANCE, atol=TOLERANCE)


def test_settings_from_flags_or_environment():
    assert distributed.settings(environ={}) is None
    env = {"JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234", "JAX_NUM_PROCESSES": "4",
           "JAX_PROCESS_ID": "3"}
    assert distributed.settings(environ=env) == distributed.Settings("10.0.0.1:1234", 4, 3)
    assert distributed.settings(process_id=0, environ=env).process_id == 0
    with pytest.raises(distributed.DistributedError, match="--num-processes"):
        distributed.settings(coordinator="h:1", process_id=0, environ={})
    with pytest.raises(distributed.DistributedError, match="host:port"):
        distributed.settings("nohost", 2, 0, environ={})
    with pytest.raises(distributed.DistributedError, match="0 <= process_id"):
        distributed.settings("h:1", 2, 2, environ={})


def test_mesh_and_batch_errors_are_clear():
    with pytest.raises(sharding.ShardingError, match="asked for 9 devices but 1 are available"):
        sharding.make_mesh(9)
    mesh = sharding.make_mesh(1)
    sharding.check_batch(7, mesh)
    fake = type("Mesh", (), {"size": 4})()
    with pytest.raises(sharding.ShardingError, match=r"a batch of 2 does not split over 4 "
                                                     r"devices; use a multiple of 4 \(e.g. 4\)"):
        sharding.check_batch(2, fake)


def test_host_device_flags_replace_earlier_values():
    flags = distributed.host_device_flags(4, "--xla_force_host_platform_device_count=2 --foo=1")
    assert flags.split() == ["--foo=1", "--xla_force_host_platform_device_count=4",
                             "--xla_cpu_collective_call_terminate_timeout_seconds="
                             f"{distributed.COLLECTIVE_TIMEOUT_S}"]


def test_a_step_that_never_finishes_ends_the_process_with_one_line():
    code = ("import time\n"
            "from jaxnn.train.distributed import Pacer\n"
            "class Stuck:\n"
            "    def block_until_ready(self):\n"
            "        time.sleep(60)\n"
            "Pacer(depth=0, timeout_s=1)(Stuck())\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=TIMEOUT_S)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: no step finished in 1 s on 1 cpu devices: a collective is stuck (host devices "
        "sharing one CPU thread pool can deadlock when the machine is busy); rerun with "
        "--devices 1"]
