"""The machine a benchmark ran on: CPU, cores, load average, library versions, the time."""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg() -> list[float] | None:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def versions() -> dict:
    out = {"python": platform.python_version()}
    for mod in ("jax", "jaxlib", "flax", "optax", "numpy", "torch"):
        try:
            out[mod] = __import__(mod).__version__
        except ImportError:
            out[mod] = None
    return out


def machine(load_before) -> dict:
    """CPU model, core count, platform, and the load average before (given) and now."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "load_before": load_before, "load_after": loadavg()}


def now() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")


__all__ = ["cpu_model", "loadavg", "machine", "now", "versions"]
