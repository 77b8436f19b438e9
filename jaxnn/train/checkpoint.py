"""Crash-safe, self-checking checkpoints of a training-state pytree (params, optimiser state, ...).

One file per step, ``DIR/step_00000012.ckpt``:

    b"JAXNNCKPT1"                 magic and format version              10 bytes
    n                             header length, unsigned little-endian   8 bytes
    header                        JSON: step, and per leaf its path, shape, dtype
    payload                       each leaf's raw bytes in C order, back to back
    sha256(everything above)                                              32 bytes

A save writes ``.step_00000012.ckpt.<pid>.tmp``, fsyncs it, renames it into place and fsyncs the
directory, so a run killed at any moment leaves either the complete new file or none (and every
older one untouched). A restore checks length, checksum and the leaves'
paths, shapes and dtypes against a template (e.g. a freshly initialised state), so a truncated,
corrupted or mismatched file is reported in one line instead of being loaded. The values come
back bit for bit.

The checksum finds damage, not forgery (anyone can recompute it), so the header is parsed as
untrusted input: at most `MAX_HEADER` bytes and `MAX_DEPTH` levels of JSON; exactly the keys
"step" (an int in [0, 2**63)) and "leaves" (a list of {"path": str, "shape": [ints in
[0, 2**40)], at most `MAX_NDIM` of them, "dtype": a name in `DTYPES`}); the step must match the
file's name; the payload the header describes must be the size the template's leaves have
before any of it is read. Anything else is a CheckpointError naming the file, and a read never
allocates more than the file's header plus the template's arrays.

Why not orbax-checkpoint (used before): for a pytree of a few megabytes it brought 15 packages and
3 s of import, wrote a directory of files per step with background threads, and on a corrupted data
block raised a several-hundred-line traceback instead of naming the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CheckpointError", "Checkpoints", "read_checkpoint", "write_checkpoint"]

MAGIC = b"JAXNNCKPT1"
_DIGEST = 32
_NAME = re.compile(r"^step_(\d{8,})\.ckpt$")
_PARTIAL = re.compile(r"^\.step_\d{8,}\.ckpt\.(\d+)\.tmp$")
MAX_HEADER = 1 << 24        # bytes of JSON header
MAX_DEPTH = 4               # {"leaves": [{"shape": [...]}]}
MAX_NDIM = 32
MAX_DIM = 1 << 40
DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
          "float16", "bfloat16", "float32", "float64", "complex64", "complex128",
          "float8_e4m3fn", "float8_e5m2")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written, read or used; the message names the file.

    `reason` is the message without the file name ("is corrupt (checksum mismatch)").
    """

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


def _error(path: Path, reason: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} {reason}", reason)


def _leaves(tree: Any) -> list[tuple[str, Any]]:
    return [(jax.tree_util.keystr(path), leaf)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _is_key(leaf: Any) -> bool:
    return jax.dtypes.issubdtype(getattr(leaf, "dtype", np.float32), jax.dtypes.prng_key)


def _host(leaf: Any) -> np.ndarray:
    """The leaf as a C-contiguous numpy array (a PRNG key as its uint32 key data)."""
    if _is_key(leaf):
        leaf = jax.random.key_data(leaf)
    return np.asarray(jax.device_get(leaf), order="C")


def _spec(leaf: Any) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) that `_host(leaf)` has, without copying it."""
    if _is_key(leaf):
        leaf = jax.eval_shape(jax.random.key_data, leaf)
    return tuple(np.shape(leaf)), jnp.dtype(getattr(leaf, "dtype", None) or np.asarray(leaf).dtype)


def _bytes(a: np.ndarray) -> memoryview:
    return a.reshape(-1).view(np.uint8).data


def write_checkpoint(path: str | os.PathLike, step: int, state: Any) -> None:
    """Write `state` to `path` atomically (temporary file, fsync, rename, fsync of the directory).

    Raises CheckpointError naming the file on any OS error (full disk, read-only directory);
    the partial temporary file is removed and whatever was at `path` before is untouched.
    """
    path = Path(path)
    named = _leaves(state)
    arrays = [_host(leaf) for _, leaf in named]
    header = json.dumps({"step": int(step), "leaves": [
        {"path": p, "shape": list(a.shape), "dtype": a.dtype.name} for (p, _), a in zip(named, arrays)]})
    head = MAGIC + struct.pack("<Q", len(header)) + header.encode()
    digest = hashlib.sha256(head)
    for a in arrays:
        digest.update(_bytes(a))
    tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(head)
            for a in arrays:
                f.write(_bytes(a))
            f.write(digest.digest())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException as err:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(err, OSError):
            raise CheckpointError(f"cannot write checkpoint {path}: {err.strerror or err}") from None
        raise


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), iteratively."""
    deepest, todo = 0, [(value, 0)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (dict, list)):
            level += 1
            deepest = max(deepest, level)
            if deepest > MAX_DEPTH:
                return deepest
            todo.extend((v, level) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_header(raw: bytes) -> tuple[int, list[tuple[str, tuple[int, ...], np.dtype]]]:
    """(step, [(path, shape, dtype)]) from a header's bytes; ValueError saying what is wrong."""
    if len(raw) > MAX_HEADER:
        raise ValueError(f"header of {len(raw)} bytes exceeds {MAX_HEADER}")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError("header is not JSON") from None
    except RecursionError:
        raise ValueError(f"header nests deeper than {MAX_DEPTH} levels") from None
    if _depth(header) > MAX_DEPTH:
        raise ValueError(f"header nests deeper than {MAX_DEPTH} levels")
    if not isinstance(header, dict) or set(header) != {"step", "leaves"}:
        raise ValueError("header must hold exactly the keys step and leaves")
    step, stored = header["step"], header["leaves"]
    if not _is_int(step) or not 0 <= step < 2 ** 63:
        raise ValueError(f"step {step!r} is not an integer in [0, 2**63)")
    if not isinstance(stored, list):
        raise ValueError("leaves is not a list")
    leaves = []
    for i, spec in enumerate(stored):
        if not isinstance(spec, dict) or set(spec) != {"path", "shape", "dtype"}:
            raise ValueError(f"leaf {i} must hold exactly the keys path, shape and dtype")
        name, shape, dtype = spec["path"], spec["shape"], spec["dtype"]
        if not isinstance(name, str):
            raise ValueError(f"leaf {i}: path is not a string")
        if (not isinstance(shape, list) or len(shape) > MAX_NDIM
                or not all(_is_int(d) and 0 <= d < MAX_DIM for d in shape)):
            raise ValueError(f"leaf {i}: shape is not a list of at most {MAX_NDIM} sizes in "
                             f"[0, 2**40)")
        if dtype not in DTYPES:
            raise ValueError(f"leaf {i}: dtype {str(dtype)[:40]!r} is not one of {', '.join(DTYPES)}")
        leaves.append((name, tuple(shape), jnp.dtype(dtype)))
    return step, leaves


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize       # Python ints: no overflow


def read_checkpoint(path: str | os.PathLike, template: Any, step: int | None = None
                    ) -> tuple[int, Any]:
    """(step, state) from `path`, shaped like `template`; CheckpointError if it is not intact,
    or (`step` given) if the header's step is not `step`.

    Each restored leaf is placed like the template's leaf (its sharding, when it has one).
    """
    path = Path(path)
    fixed = len(MAGIC) + 8
    expected = _leaves(template)
    want_specs = [_spec(leaf) for _, leaf in expected]
    want_payload = sum(_nbytes(shape, dtype) for shape, dtype in want_specs)
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(fixed)
            if not head.startswith(MAGIC):
                raise _error(path, "is not a jaxnn checkpoint" if len(head) >= len(MAGIC)
                             else f"is truncated ({size} bytes)")
            if len(head) < fixed:
                raise _error(path, f"is truncated ({size} bytes)")
            (n,) = struct.unpack("<Q", head[len(MAGIC):])
            if n > MAX_HEADER:
                raise _error(path, f"is corrupt (header length {n} exceeds {MAX_HEADER} bytes)")
            if size < fixed + n + _DIGEST:
                raise _error(path, f"is truncated ({size} bytes, the header alone needs "
                                   f"{fixed + n + _DIGEST})")
            raw = f.read(n)
            try:
                header_step, stored = parse_header(raw)
            except ValueError as err:
                raise _error(path, f"is corrupt or truncated (unreadable header: {err})") from None
            total = fixed + n + _DIGEST + sum(_nbytes(s, d) for _, s, d in stored)
            if size < total:
                raise _error(path, f"is truncated ({size} of {total} bytes)")
            if size > total:
                raise _error(path, "is corrupt (checksum mismatch)")
            if total - fixed - n - _DIGEST != want_payload or len(stored) != len(expected):
                # The file is as long as its header says: it holds another state.
                _check_structure(path, stored, expected, want_specs)
                raise _error(path, "holds another state (its arrays differ in size)")
            rest = f.read(size - fixed - n)
    except OSError as err:
        raise _error(path, f"cannot be read: {err.strerror or err}") from None
    if len(rest) != size - fixed - n:
        raise _error(path, "is truncated (changed while being read)")
    digest = hashlib.sha256(head)
    digest.update(raw)
    digest.update(memoryview(rest)[:-_DIGEST])
    if digest.digest() != rest[-_DIGEST:]:
        raise _error(path, "is corrupt (checksum mismatch)")
    _check_structure(path, stored, expected, want_specs)
    if step is not None and header_step != step:
        raise _error(path, f"holds step {header_step}, not the step {step} its name says")
    offset, leaves = 0, []
    for (_, shape, dtype), (_, want) in zip(stored, expected):
        count = math.prod(shape)
        value = np.frombuffer(rest, dtype, count, offset).reshape(shape).copy()  # owned, writable
        offset += count * dtype.itemsize
        leaves.append(_place(value, want))
    return header_step, jax.tree.unflatten(jax.tree.structure(template), leaves)


def _check_structure(path: Path, stored: list, expected: list, want_specs: list) -> None:
    if [p for p, _, _ in stored] != [p for p, _ in expected]:
        raise _error(path, f"holds a different state structure ({len(stored)} leaves, the run "
                           f"expects {len(expected)}): other model or optimiser settings?")
    for (_, shape, dtype), (name, _), want_spec in zip(stored, expected, want_specs):
        if (shape, dtype) != want_spec:
            raise _error(path, f"has leaf {name} as {dtype.name}{list(shape)}, the run expects "
                               f"{want_spec[1].name}{list(want_spec[0])}")


def _place(value: np.ndarray, template_leaf: Any) -> Any:
    sharding = getattr(template_leaf, "sharding", None)
    if _is_key(template_leaf):
        return jax.random.wrap_key_data(jnp.asarray(value), impl=jax.random.key_impl(template_leaf))
    if sharding is None:
        return jnp.asarray(value)
    return jax.make_array_from_callback(value.shape, sharding, lambda idx: value[idx])


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host (this process always does)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Checkpoints:
    """Numbered checkpoints in `directory`; after each save keeps the newest `max_to_keep`.

    save(step, state); steps() / latest() (by file name, unchecked); restore(step, template);
    restore_latest(template) -> (step, state) from the newest intact file, or None when there are
    none. Nothing is created until the first save; a save removes partial files left by writers
    killed mid-save (whose process is gone), never another live writer's.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.directory = Path(directory).absolute()
        self.max_to_keep = max_to_keep

    def path(self, step: int) -> Path:
        return self.directory / f"step_{step:08d}.ckpt"

    def steps(self) -> list[int]:
        """Steps with a checkpoint file, ascending (files not yet checked)."""
        if not self.directory.is_dir():
            return []
        return sorted(int(m.group(1)) for m in map(_NAME.match, os.listdir(self.directory)) if m)

    def latest(self) -> int | None:
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, state: Any) -> Path:
        """Write step's checkpoint (durable when this returns), then prune the oldest ones.

        On failure raises CheckpointError naming the file and the newest checkpoint kept.
        """
        try:
            write_checkpoint(self.path(step), step, state)
        except CheckpointError as err:
            kept = [s for s in self.steps() if s != step]
            raise CheckpointError(f"{err}; kept " + (f"checkpoint {self.path(kept[-1])}" if kept
                                                      else "no earlier checkpoint")) from None
        for old in self.steps()[:-self.max_to_keep]:
            self.path(old).unlink(missing_ok=True)
        self.remove_stale()
        return self.path(step)

    def remove_stale(self) -> None:
        """Remove partial files of writers killed mid-save (their process gone); another live
        writer's partial file is never touched."""
        for name in os.listdir(self.directory):
            m = _PARTIAL.match(name)
            if m and not pid_alive(int(m.group(1))):
                (self.directory / name).unlink(missing_ok=True)

    def restore(self, step: int, template: Any) -> Any:
        return read_checkpoint(self.path(step), template, step)[1]

    def restore_latest(self, template: Any, report: Callable[[str], None] = _stderr
                       ) -> tuple[int, Any] | None:
        """(step, state) from the newest intact checkpoint; None if the directory holds none.

        Each unusable newer file is reported in one line (via `report`) and skipped; if every
        file is unusable, raises CheckpointError listing them. Nothing is deleted.
        """
        steps = self.steps()
        if not steps:
            others = sorted(os.listdir(self.directory)) if self.directory.is_dir() else []
            others = [o for o in others if not o.endswith(".tmp")]
            if others:
                raise CheckpointError(f"{self.directory} holds no jaxnn checkpoint files (found "
                                      f"{', '.join(others[:4])}; written by an older version?)")
            return None
        problems = []
        for step in reversed(steps):
            try:
                return step, self.restore(step, template)
            except CheckpointError as err:
                problems.append(f"{self.path(step).name} {err.reason}")
                report(f"skipping {err}")
        raise CheckpointError(f"no usable checkpoint in {self.directory}: {'; '.join(problems)} "
                              f"(nothing was deleted)")

    def close(self) -> None:
        """Nothing to release (saves are synchronous); kept so callers can close uniformly."""
