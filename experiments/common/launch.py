"""Start N local processes of one command as a multi-process JAX run on 127.0.0.1.

    python -m experiments.common.launch -n 2 -- python -m experiments.train_lenet --out runs/mp
    python -m experiments.common.launch -n 2 --devices-per-process 2 --timeout 600 -- python -m ...

Process i gets JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT, JAX_NUM_PROCESSES=N, JAX_PROCESS_ID=i
(read by `jaxnn.train.distributed.settings`) and, with --devices-per-process D > 1, XLA_FLAGS for D
host devices. Lines from process i > 0 are prefixed "[i] ". The first process to fail stops
the others; a run past --timeout is stopped too (exit status 124), so a stuck collective
never hangs the caller. On a real cluster, start the same command once per host with the
three variables set by the scheduler (see README, "Scaling out").
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from experiments.common import cli
from jaxnn.train.distributed import ENV, host_device_flags


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _relay(stream, prefix: str) -> None:
    for line in stream:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


def launch(command: list[str], num_processes: int, *, devices_per_process: int = 1,
           port: int | None = None, timeout_s: float | None = None) -> int:
    """Run `command` as processes 0..N-1 and wait; the exit status of the run (0: all succeeded).

    The first non-zero status wins and the other processes are terminated; 124 on timeout.
    """
    address = f"127.0.0.1:{port or free_port()}"
    procs, relays = [], []
    for i in range(num_processes):
        env = dict(os.environ, **{ENV["coordinator"]: address,
                                  ENV["num_processes"]: str(num_processes),
                                  ENV["process_id"]: str(i)})
        if devices_per_process > 1:
            env["XLA_FLAGS"] = host_device_flags(devices_per_process, env.get("XLA_FLAGS", ""))
        p = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, bufsize=1)
        t = threading.Thread(target=_relay, args=(p.stdout, "" if i == 0 else f"[{i}] "),
                             daemon=True)
        t.start()
        procs.append(p)
        relays.append(t)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    status = 0
    try:
        while any(p.poll() is None for p in procs):
            failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
            if failed or (deadline is not None and time.monotonic() > deadline):
                status = failed[0] if failed else 124
                if not failed:
                    print(f"launch: stopped after {timeout_s:g} s (--timeout)", file=sys.stderr)
                _stop(procs)
                break
            time.sleep(0.1)
    except BaseException:               # Ctrl-C or SIGTERM: no process is left behind
        _stop(procs)
        raise
    for t in relays:
        t.join(5)
    return status or next((p.returncode for p in procs if p.returncode), 0)


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each running process (each says where it stopped), SIGKILL after 10 s."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


MAX_PROCESSES = 256


def main(argv=None) -> int:
    ap = cli.parser("python -m experiments.common.launch", __doc__.split("\n")[0])
    ap.add_argument("-n", "--num-processes", type=cli.positive_int, default=2)
    ap.add_argument("--devices-per-process", type=cli.positive_int, default=1,
                    help="host devices per process on CPU (XLA_FLAGS)")
    ap.add_argument("--port", type=cli.port_number, default=None,
                    help="coordinator port (default: a free one)")
    ap.add_argument("--timeout", type=cli.positive_float, default=None,
                    help="stop everything after this many s")
    ap.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the command to run after --")
    if args.num_processes > MAX_PROCESSES:
        ap.error(f"--num-processes must be at most {MAX_PROCESSES}, got {args.num_processes}")
    if shutil.which(command[0]) is None:
        ap.error(f"{command[0]}: no such command (not an executable on PATH)")
    return launch(command, args.num_processes, devices_per_process=args.devices_per_process,
                  port=args.port, timeout_s=args.timeout)


if __name__ == "__main__":
    sys.exit(cli.cli_main(main))
