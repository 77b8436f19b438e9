"""The command line every experiment shares: one entry point, one-line errors, checked arguments,
one owner per run folder.

    p = cli.parser("python -m experiments.x", __doc__)
    p.add_argument("--epochs", type=cli.positive_int, default=3)
    p.add_argument("--seed", type=cli.seed, default=0)
    p.add_argument("--lr", type=cli.positive_float, default=0.1)
    ...
    def main(argv=None) -> int:
        args = p.parse_args(argv)                       # a bad value: UsageError, nothing done
        out = cli.claim_out(args.out, resume=args.resume)   # checked, made, locked
        ...
    if __name__ == "__main__":
        sys.exit(cli.cli_main(main))

Rules (each a `UsageError`: one line ``error: ...`` on stderr, exit status 2, before any data is
read or any computation starts):

| what | rule |
|---|---|
| a checked int flag (`positive_int`, `nonnegative_int`) | an integer, ≥ 1 (≥ 0) |
| `seed` | an integer in [0, 2**32) |
| a float flag (`positive_float`, `nonnegative_float`, `finite_float`, `fraction`) | finite; > 0 (≥ 0; any; (0, 1]) |
| unknown flag, missing or malformed value | ``error: <prog>: <argparse's message>`` |
| a size whose estimated memory exceeds the machine's (`check_memory`) | refused, the estimate in the message |
| ``--out`` that is a file, or cannot be made or written | refused |
| ``--out`` holding another run's files (anything but its lock) | refused unless ``--resume`` |
| ``--resume`` on an ``--out`` holding nothing | refused (a mistyped path never starts a fresh run) |
| ``--out`` in use by another live process | refused, naming the holder (pid, host, command) |

Then, through `cli_main`: an OSError on any path is ``error: <path>: <reason>`` (exit 2); a
corrupt data file or checkpoint, a non-finite loss are one line (exit 2); Ctrl-C (exit 130) and
SIGTERM (exit 143) print one line saying where the run stopped and the command that resumes it.

One owner per run folder: `claim_out` takes an exclusive `fcntl.flock` on ``OUT/.lock`` (the
holder's pid, host and command written in it) for the life of the run. The kernel releases it
when the process ends, however it ends, so the lock left by a killed run never blocks a resume.
"""

from __future__ import annotations

import argparse
import errno
import math
import os
import shlex
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ArgumentParser", "LOCK_NAME", "Progress", "UsageError", "check_memory", "claim_out", "check_out",
           "cli_main", "finite_float", "fraction", "holds_run", "nonnegative_float",
           "nonnegative_int", "parser", "positive_float", "positive_int", "print_table", "progress",
           "release_all",
           "run_lock", "seed"]

LOCK_NAME = ".lock"
SEED_LIMIT = 2 ** 32


class UsageError(Exception):
    """A mistake the user can fix (bad argument, existing output, missing data): one line,
    exit status 2 from `cli_main`."""


class Interrupted(BaseException):
    """SIGTERM, raised in the main thread like KeyboardInterrupt is for SIGINT."""


# ------------------------------------------------------------------ argument types
class Check:
    """An argparse `type=`: text -> value, or a UsageError naming the flag (bound by
    `ArgumentParser.add_argument`) and what was expected."""

    def __init__(self, name: str, convert: Callable[[str, str], Any]):
        self.name, self.convert, self.flag = name, convert, "value"

    def bound(self, flag: str) -> Check:
        check = Check(self.name, self.convert)
        check.flag = flag
        return check

    def __call__(self, text: str) -> Any:
        return self.convert(text if isinstance(text, str) else str(text), self.flag)

    def __repr__(self) -> str:          # argparse names the type in some messages
        return self.name


def _int(text: str, flag: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise UsageError(f"{flag} must be an integer, got {text!r}") from None


def _float(text: str, flag: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{flag} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise UsageError(f"{flag} must be a finite number, got {text!r}")
    return value


def _positive_int(text: str, flag: str) -> int:
    value = _int(text, flag)
    if value < 1:
        raise UsageError(f"{flag} must be positive, got {value}")
    return value


def _nonnegative_int(text: str, flag: str) -> int:
    value = _int(text, flag)
    if value < 0:
        raise UsageError(f"{flag} must be ≥ 0, got {value}")
    return value


def _seed(text: str, flag: str) -> int:
    value = _int(text, flag)
    if not 0 <= value < SEED_LIMIT:
        raise UsageError(f"{flag} must be ≥ 0 and < 2**32, got {value}")
    return value


def _positive_float(text: str, flag: str) -> float:
    value = _float(text, flag)
    if not value > 0:
        raise UsageError(f"{flag} must be positive, got {value}")
    return value


def _nonnegative_float(text: str, flag: str) -> float:
    value = _float(text, flag)
    if value < 0:
        raise UsageError(f"{flag} must be ≥ 0, got {value}")
    return value


def _fraction(text: str, flag: str) -> float:
    value = _float(text, flag)
    if not 0 < value <= 1:
        raise UsageError(f"{flag} must lie in (0, 1], got {value}")
    return value


positive_int = Check("positive integer", _positive_int)
nonnegative_int = Check("non-negative integer", _nonnegative_int)
seed = Check("seed", _seed)
finite_float = Check("finite number", _float)
positive_float = Check("positive number", _positive_float)
nonnegative_float = Check("non-negative number", _nonnegative_float)
fraction = Check("fraction", _fraction)


def port(text: str, flag: str = "--port") -> int:
    value = _int(text, flag)
    if not 1 <= value <= 65535:
        raise UsageError(f"{flag} must lie in [1, 65535], got {value}")
    return value


port_number = Check("port", port)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors (unknown flag, missing or malformed value) are a UsageError, so
    `cli_main` prints them as one line ``error: <prog>: <message>`` and exits with status 2;
    a `Check` type names its flag in its message."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        if isinstance(kwargs.get("type"), Check):
            flags = [a for a in args if a.startswith("--")] or list(args)
            kwargs["type"] = kwargs["type"].bound(flags[0] if flags else "value")
        return super().add_argument(*args, **kwargs)

    def add_argument_group(self, *args: Any, **kwargs: Any) -> Any:
        group = super().add_argument_group(*args, **kwargs)
        plain = group.add_argument

        def add(*a: Any, **kw: Any) -> argparse.Action:
            if isinstance(kw.get("type"), Check):
                flags = [s for s in a if s.startswith("--")] or list(a)
                kw["type"] = kw["type"].bound(flags[0] if flags else "value")
            return plain(*a, **kw)

        group.add_argument = add  # type: ignore[method-assign]
        return group

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:
        _STATE.resumable = "--resume" in self._option_string_actions
        _STATE.prog = self.prog
        parsed = super().parse_args(args, namespace)
        for action in self._actions:   # argparse drops a value "--" given as --flag=--
            if (action.nargs is None and action.option_strings and action.type is not None
                    and isinstance(getattr(parsed, action.dest, None), list)):
                self.error(f"argument {action.option_strings[-1]}: expected one value")
        return parsed

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}")


def parser(prog: str, description: str | None = None, **kwargs: Any) -> ArgumentParser:
    """The shared parser: one-line usage errors (exit 2 through `cli_main`); `description`'s
    first paragraph is shown by --help."""
    if description:
        description = description.strip().split("\n\n")[0]
    return ArgumentParser(prog=prog, description=description, **kwargs)


def memory_bytes() -> int:
    """This machine's physical memory in bytes."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"


def check_memory(what: str, nbytes: float) -> None:
    """UsageError when an estimate of the memory `what` needs exceeds this machine's memory;
    the estimate is in the message."""
    total = memory_bytes()
    if nbytes > total:
        raise UsageError(f"{what} needs about {_size(nbytes)} (estimated), more than the "
                         f"{_size(total)} of memory here")


# ------------------------------------------------------------------ the headline
def _cell(value: object) -> str:
    return " ".join(str(value).split()).replace("|", "\\|")


def print_table(title: str, rows: list[tuple[str, str]] | list[dict], file: Any = None) -> None:
    """Print a command's headline result as a small markdown table after a ``title`` line.

    rows: ``(what, value)`` pairs, drawn as ``| what | value |``; or dicts, one a row, the
    first dict's keys the header (a key missing from a later row is an empty cell). Values are
    printed with ``str``; a ``|`` in a cell is escaped. ``file``: default ``sys.stdout``.
    """
    file = sys.stdout if file is None else file
    dicts = [r for r in rows if isinstance(r, dict)]
    pairs = [r for r in rows if isinstance(r, tuple) and len(r) == 2]
    if dicts and len(dicts) == len(rows):
        header = [_cell(k) for k in dicts[0]]
        body = [[_cell(r.get(k, "")) for k in dicts[0]] for r in dicts]
    elif len(pairs) == len(rows):
        header, body = ["what", "value"], [[_cell(a), _cell(b)] for a, b in pairs]
    else:
        raise TypeError("print_table: rows must be (what, value) pairs or dicts, not a mix")
    widths = [max(len(c) for c in col) for col in zip(header, *body, strict=False)]
    lines = [title,
             "| " + " | ".join(c.ljust(w) for c, w in zip(header, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |" for row in body]
    print("\n".join(lines), file=file, flush=True)


# ------------------------------------------------------------------ run folders
def holds_run(out: Path) -> bool:
    """Whether the folder holds files of a run (anything but the lock file)."""
    try:
        return any(name != LOCK_NAME for name in os.listdir(out))
    except FileNotFoundError:
        return False


def check_out(out: str | os.PathLike, *, resume: bool = False, existing: str = "refuse") -> Path:
    """Check --out without changing anything (UsageError): not a file; writable (or makeable);
    existing: "refuse" a folder holding a run unless resuming (and refuse resuming an empty
    one), or "reuse" it (a command that collects into its folder)."""
    if not out:
        raise UsageError("--out must name a directory")
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise UsageError(f"--out {path} exists and is not a directory")
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise UsageError(f"--out {path}: not writable ({os.strerror(errno.EACCES)})")
    else:
        parent = path.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise UsageError(f"--out {path}: {parent} is not a directory")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise UsageError(f"--out {path}: cannot be made in {parent} ({os.strerror(errno.EACCES)})")
    if existing == "refuse":
        if resume and not holds_run(path):
            raise UsageError(f"--resume: {path} holds no run to resume; check the path, or drop "
                             f"--resume to start a new run")
        if not resume and holds_run(path):
            if _STATE.resumable:
                raise UsageError(f"{path} already holds a run; pass --resume to continue it or "
                                 f"choose another --out")
            raise UsageError(f"{path} already holds a run; choose another --out (this command "
                             f"does not resume, and never overwrites a run)")
    return path


class _Lock:
    def __init__(self, path: Path, fd: int, made: list[Path], created: bool):
        self.path, self.fd, self.count, self.made, self.created = path, fd, 1, made, created


_LOCKS: dict[str, _Lock] = {}


def _command() -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    head = ["python", "-m", spec.name] if spec is not None and spec.name else ["python", sys.argv[0]]
    return shlex.join(head + sys.argv[1:])


def run_lock(out: str | os.PathLike, command: str | None = None) -> _Lock:
    """Take (or, held by this process already, re-enter) the exclusive lock on ``out/.lock``,
    making the folder. UsageError naming the holder when another process holds it."""
    import fcntl

    path = Path(out)
    key = os.path.realpath(path)
    held = _LOCKS.get(key)
    if held is not None:
        held.count += 1
        return held
    made = []
    missing = path.absolute()
    while not missing.exists():
        made.append(missing)
        missing = missing.parent
    path.mkdir(parents=True, exist_ok=True)
    lock_path = path / LOCK_NAME
    try:
        fd, created = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), True
    except FileExistsError:
        fd, created = os.open(lock_path, os.O_RDWR), False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise UsageError(f"{path} is in use by another run ({holder}); wait for it to end or "
                         f"choose another --out") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}: {command or _command()}\n".encode(), 0)
    lock = _Lock(path, fd, made[::-1], created)
    _LOCKS[key] = lock
    return lock


def release(lock: _Lock, *, failed: bool = False) -> None:
    """Leave the lock once (the last leave unlocks it). `failed`: remove the lock file if this
    process made it or the folder holds nothing else, and the folders this process made if they
    are empty (a failed command leaves nothing behind)."""
    lock.count -= 1
    if lock.count > 0:
        return
    _LOCKS.pop(os.path.realpath(lock.path), None)
    if failed and (lock.created or not holds_run(lock.path)):
        try:
            (lock.path / LOCK_NAME).unlink(missing_ok=True)
            if not holds_run(lock.path):
                for folder in reversed(lock.made):
                    folder.rmdir()
        except OSError:
            pass
    os.close(lock.fd)


def release_all(*, failed: bool = False) -> None:
    for lock in list(_LOCKS.values()):
        lock.count = 1
        release(lock, failed=failed)


def claim_out(out: str | os.PathLike, *, resume: bool = False, existing: str = "refuse",
              command: str | None = None) -> Path:
    """`check_out`, then make the folder and hold its lock until `cli_main` returns (or the
    process ends). Returns the folder."""
    path = check_out(out, resume=resume, existing="reuse")
    lock = run_lock(path, command)
    try:                              # what the folder holds, checked under the lock
        check_out(path, resume=resume, existing=existing)
    except BaseException:
        release(lock, failed=True)
        raise
    _STATE.out = path
    return path


# ------------------------------------------------------------------ where a run stands
class Progress:
    """What `cli_main` says when a run is interrupted: the folder, the epoch under way and the
    newest checkpoint (set by the training loop)."""

    def __init__(self) -> None:
        self.out: Path | None = None
        self.epoch: int | None = None
        self.checkpoint: str | None = None
        self.resumable = False
        self.prog: str | None = None

    def describe(self) -> str:
        where = []
        if self.epoch is not None:
            where.append(f"during epoch {self.epoch}")
        if self.out is not None:
            where.append(f"in {self.out}")
        where.append(f"last checkpoint {self.checkpoint}" if self.checkpoint else "no checkpoint yet")
        return ", ".join(where)


_STATE = Progress()


def progress() -> Progress:
    return _STATE


def _resume_command(argv: list[str]) -> str:
    """The command line that continues the run: the parser's prog (``python -m module``), the
    arguments given, and --resume when the command has it."""
    args = list(argv)
    if _STATE.resumable and "--resume" not in args:
        args.append("--resume")
    return (_STATE.prog or _command().split(" ", 1)[0]) + (" " + shlex.join(args) if args else "")


def _os_error_line(err: OSError) -> str:
    reason = err.strerror or str(err)
    if err.filename is not None:
        names = os.fsdecode(err.filename)
        if getattr(err, "filename2", None) is not None:
            names += f" -> {os.fsdecode(err.filename2)}"
        return f"{names}: {reason}"
    return reason


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted()


def cli_main(main: Callable[[list[str] | None], int], argv: list[str] | None = None) -> int:
    """Run an experiment's main. A UsageError, an OSError on any path (one line naming it), a
    corrupt data file or checkpoint and a non-finite loss become one line on stderr and exit
    status 2; Ctrl-C and SIGTERM one line saying where the run stopped and how to resume it,
    exit 130 / 143 (a traceback means a bug). Run-folder locks taken by `main` are released
    on return; after an error, a folder this call made and left empty is removed."""
    from experiments.common.loop import NonFiniteLoss
    from jaxnn.data import DataError
    from jaxnn.train.checkpoint import CheckpointError

    global _STATE
    _STATE = Progress()
    given = list(sys.argv[1:] if argv is None else argv)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    except ValueError:                      # not the main thread: leave SIGTERM alone
        previous = None
    failed = True
    try:
        status = main(argv)
        failed = bool(status)
        return status
    except (UsageError, DataError, NonFiniteLoss, CheckpointError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr, flush=True)
        return 2
    except OSError as err:
        print(f"error: {_one_line(_os_error_line(err))}", file=sys.stderr, flush=True)
        return 2
    except (KeyboardInterrupt, Interrupted) as err:
        what = "interrupted (Ctrl-C)" if isinstance(err, KeyboardInterrupt) else "terminated (SIGTERM)"
        if _STATE.resumable and _STATE.out is not None and holds_run(_STATE.out):
            how = f"resume with: {_resume_command(given)}"
        else:                                   # nothing to resume: the same command again
            _STATE.resumable = False
            how = f"nothing to resume; run again with: {_resume_command(given)}"
        print(f"{what}: stopped {_STATE.describe()}; {how}", file=sys.stderr, flush=True)
        return 130 if isinstance(err, KeyboardInterrupt) else 143
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        release_all(failed=failed)
