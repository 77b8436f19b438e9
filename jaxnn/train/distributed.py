"""Several processes as one JAX program, and several devices on one CPU.

Multi-process (multi-host): every process calls `initialize(settings)` before touching a
device. Process 0 serves the coordinator at `coordinator` ("host:port"); `jax.devices()` then
lists the devices of every process and a `jax.sharding.Mesh` over them spans the hosts. On
CPU the cross-process collectives go through gloo (`jax_cpu_collectives_implementation`), so
two processes on 127.0.0.1 behave like two hosts. The settings come from arguments or from
the environment variables in `ENV` (what `experiments.common.launch` sets):

    JAX_COORDINATOR_ADDRESS=10.0.0.1:1234 JAX_NUM_PROCESSES=4 JAX_PROCESS_ID=0

Host devices: `--xla_force_host_platform_device_count=D` splits one CPU into D devices that
share one thread pool. `host_device_flags(D)` also sets how long a collective may wait for
its peers (`COLLECTIVE_TIMEOUT_S`) before XLA aborts the process with "Termination timeout
for `all reduce ...`" instead of hanging.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import jax

ENV = {"coordinator": "JAX_COORDINATOR_ADDRESS", "num_processes": "JAX_NUM_PROCESSES",
       "process_id": "JAX_PROCESS_ID"}
COLLECTIVE_TIMEOUT_S = 60
STUCK_TIMEOUT_S = 30


class DistributedError(ValueError):
    """Inconsistent multi-process settings (one line, names the flag or variable)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    coordinator: str
    num_processes: int
    process_id: int


def settings(coordinator: str | None = None, num_processes: int | None = None,
             process_id: int | None = None, environ: Mapping[str, str] = os.environ
             ) -> Settings | None:
    """Validated settings from the arguments, else `ENV`; None for a single-process run.

    Raises DistributedError when only some are given or a value is out of range.
    """
    given: dict[str, Any] = {"coordinator": coordinator, "num_processes": num_processes, "process_id": process_id}
    for name, var in ENV.items():
        if given[name] is None and environ.get(var):
            given[name] = environ[var]
    if all(v is None for v in given.values()):
        return None
    missing = [f"--{k.replace('_', '-')} (or {ENV[k]})" for k, v in given.items() if v is None]
    if missing:
        raise DistributedError(f"a multi-process run needs {', '.join(missing)} as well")
    host, _, port = str(given["coordinator"]).rpartition(":")
    if not host or not port.isdigit():
        raise DistributedError(f"coordinator must be host:port, got {given['coordinator']!r}")
    try:
        n, i = int(given["num_processes"]), int(given["process_id"])
    except ValueError:
        raise DistributedError(f"num_processes and process_id must be integers, got "
                               f"{given['num_processes']!r} and {given['process_id']!r}") from None
    if n < 1 or not 0 <= i < n:
        raise DistributedError(f"need num_processes >= 1 and 0 <= process_id < num_processes, "
                               f"got {n} and {i}")
    return Settings(str(given["coordinator"]), n, i)


def initialize(config: Settings | None, *, timeout_s: int = 120) -> None:
    """Join the multi-process run described by `config` (nothing to do for None).

    Must run before the first use of a device. Gives up after `timeout_s` seconds if the
    other processes do not connect.
    """
    if config is None or config.num_processes == 1:
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(config.coordinator, config.num_processes, config.process_id,
                               initialization_timeout=timeout_s)


def host_device_flags(num_devices: int, flags: str = "") -> str:
    """`flags` (an XLA_FLAGS value) with D host devices and the collective timeout added."""
    kept = [f for f in flags.split() if not f.startswith(
        ("--xla_force_host_platform_device_count=", "--xla_cpu_collective_call_terminate"))]
    return " ".join(kept + [f"--xla_force_host_platform_device_count={num_devices}",
                            "--xla_cpu_collective_call_terminate_timeout_seconds="
                            f"{COLLECTIVE_TIMEOUT_S}"])


class Pacer:
    """Keep at most `depth` + 1 steps in flight, and end the process if one never finishes.

    On D host devices of one CPU, dispatching steps ahead of their completion can leave one
    device waiting in an all-reduce for a peer whose step never starts: XLA then aborts
    after its collective timeout with "Termination timeout for `all reduce ...`". Waiting,
    after dispatching step k, for step k - depth to finish bounds the run-ahead (depth 1
    still overlaps preparing the next batch with the running step). If a wait lasts longer
    than `timeout_s`, a watchdog thread prints one line naming the problem and exits with
    status 1, before XLA's own abort.

        pace = Pacer(depth=1); for batch in ...: out = step(...); pace(out)
    """

    def __init__(self, depth: int = 1, timeout_s: float = STUCK_TIMEOUT_S, what: str = "step"):
        self.depth, self.timeout_s, self.what = depth, timeout_s, what
        self._pending: collections.deque[list[Any]] = collections.deque()
        self._waiting_since: float | None = None
        self._watchdog: threading.Thread | None = None

    def __call__(self, outputs) -> None:
        self._pending.append(jax.tree.leaves(outputs))
        while len(self._pending) > self.depth:
            self.wait(self._pending.popleft())

    def wait(self, outputs) -> None:
        """Block until `outputs` are ready, under the watchdog."""
        if self._watchdog is None:
            self._watchdog = threading.Thread(target=self._watch, daemon=True)
            self._watchdog.start()
        self._waiting_since = time.monotonic()
        try:
            jax.block_until_ready(outputs)
        finally:
            self._waiting_since = None

    def _watch(self) -> None:
        while True:
            time.sleep(min(1.0, self.timeout_s / 4))
            since = self._waiting_since
            if since is not None and time.monotonic() - since > self.timeout_s:
                sys.stderr.write(
                    f"error: no {self.what} finished in {self.timeout_s:g} s on "
                    f"{jax.local_device_count()} {jax.devices()[0].platform} devices: a collective "
                    f"is stuck (host devices sharing one CPU thread pool can deadlock when the "
                    f"machine is busy); rerun with --devices 1\n")
                sys.stderr.flush()
                os._exit(1)


def needs_pacing(mesh) -> bool:
    """True for a mesh of several CPU devices in this process (they share one thread pool)."""
    local = [d for d in mesh.devices.flat if d.process_index == jax.process_index()]
    return len(local) > 1 and local[0].platform == "cpu"


def is_main_process() -> bool:
    """True in process 0, the one that writes files."""
    return jax.process_index() == 0


__all__ = ["COLLECTIVE_TIMEOUT_S", "ENV", "STUCK_TIMEOUT_S", "DistributedError", "Pacer",
           "Settings", "host_device_flags", "initialize", "is_main_process", "needs_pacing",
           "settings"]
