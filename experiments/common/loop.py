"""The one training loop every experiment runs: epochs of a pure step, evaluation, metrics,
checkpoints, resume, progress and plots — the learning rule, the data and the metrics are
its arguments.

    summary = run(LoopConfig(out="runs/x", epochs=5, seed=0),
                  init=lambda: state0,          # the training state: a pytree of arrays
                  step=step,                    # (state, batch, key) -> (state, {"loss": J, ...})
                  batches=lambda epoch: ...,    # the epoch's batches, a function of (seed, epoch)
                  evaluate=lambda state, epoch: {"test_acc": ...},
                  plots=lambda state, rows, out_dir: ...,
                  config_dict={...}, name="lenet5")

The step has the one signature of `jaxnn.train` (`jaxnn.TrainStep.step`, whose state is a
`jaxnn.TrainState`); any pure function of that signature works (a rule's own state dict).

Per epoch: the step runs over `batches(epoch)` with key fold_in(fold_in(key(seed), epoch), i)
for batch i; metrics.csv gets one row (epoch, the mean of each step metric, evaluate's
metrics, seconds); the state is checkpointed atomically. `resume=True` restores the newest
checkpoint and continues bit for bit, provided `batches` depends only on (seed, epoch).
A NaN or Inf in the loss or the new state stops the run, naming the step and the first such
parameter; the checkpoints before it stay. on_nan="skip" instead leaves the state as it was
for that batch and counts it (train_skipped).
summary.json holds the final row and where the wall time went (start-up, compile, training,
evaluation, checkpoints, plots).

One writer per folder: a run holds the exclusive lock on ``OUT/.lock`` (`cli.run_lock`) from
before it looks at the folder to its end, and refuses a folder holding another run's files
unless resuming. Every file it writes goes through `write_atomic` (a temporary file named with
the writer's pid, fsync, rename; the permissions any new file gets), so a run stopped at any
moment leaves each file whole or absent, and a writer removes only its own temporary files or
those of processes that are gone.

Everything with side effects lives here, outside the compiled step.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common import cli
from experiments.common.cli import ArgumentParser, UsageError, cli_main
from jaxnn.train.checkpoint import pid_alive

START = time.perf_counter()  # import time of this module: the start of the process, near enough
_STARTUP = None  # set once the first run has booked the process's start-up


ON_NAN = ("stop", "skip")


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or Inf; the message names the epoch and step."""


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    out: str
    epochs: int
    seed: int = 0
    resume: bool = False
    progress: bool = True
    write: bool = True  # False: read (resume) but write nothing, as processes > 0 do
    plots: bool = True
    keep_checkpoints: int = 2
    on_nan: str = "stop"

    def validate(self) -> LoopConfig:
        """Check every field before any data is read or any directory made."""
        if not self.out:
            raise UsageError("--out must name a directory")
        for name in ("epochs", "keep_checkpoints"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.on_nan not in ON_NAN:
            raise UsageError(f"--on-nan must be one of {', '.join(ON_NAN)}, got {self.on_nan!r}")
        if (not isinstance(self.seed, int) or isinstance(self.seed, bool)
                or not 0 <= self.seed < cli.SEED_LIMIT):
            raise UsageError(f"--seed must be ≥ 0 and < 2**32, got {self.seed!r}")
        out = Path(self.out)
        if self.write and out.exists() and not out.is_dir():
            raise UsageError(f"--out {out} exists and is not a directory")
        return self


_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")


def _umask() -> int:
    """The process's umask, read without changing it where /proc tells it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(path: Path, text: str | bytes) -> None:
    """Write text to path through a temporary file ``.NAME.<pid>.<random>.tmp`` beside it,
    fsync and a rename: never half a file, whatever stops the process. The file gets the
    permissions any new file gets (0o666 less the umask), not mkstemp's 0o600. Temporary files
    of `path` left by killed writers (their pid gone) are removed; other processes' never."""
    path = Path(path)
    data = text.encode() if isinstance(text, str) else text
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.",
                                   suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), 0o666 & ~_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(err, OSError):         # named by the file meant, not the temporary one
            raise OSError(err.errno, err.strerror or str(err), os.fspath(path)) from None
        raise
    remove_stale_temporaries(path.parent, path.name)


def save_figure(fig: Any, path: Path, **kwargs: Any) -> None:
    """`fig.savefig(path, **kwargs)` through `write_atomic`: a figure is whole or absent, and
    an OSError names `path`. The format follows the suffix (``.png``, ``.pdf``, ``.svg``)."""
    import io

    path = Path(path)
    buffer = io.BytesIO()
    fig.savefig(buffer, format=path.suffix.lstrip(".") or "png", **kwargs)
    write_atomic(path, buffer.getvalue())


def remove_stale_temporaries(directory: Path, name: str | None = None) -> None:
    """Remove `write_atomic`'s temporary files in `directory` (of `name` only, when given)
    whose writing process is gone."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for entry in names:
        m = _TMP.match(entry)
        if m and (name is None or m["name"] == name) and not pid_alive(int(m["pid"])):
            try:
                os.unlink(os.path.join(directory, entry))
            except OSError:
                pass


def write_metrics(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    lines = [",".join(fields)]
    lines += [",".join(_cell(row.get(k, "")) for k in fields) for row in rows]
    write_atomic(path, "\n".join(lines) + "\n")


def _cell(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def read_metrics(path: Path, upto_epoch: int | None = None) -> list[dict]:
    """metrics.csv as a list of dicts (epoch an int, the rest floats), up to an epoch.
    A malformed file is a UsageError naming it."""
    if not Path(path).exists():
        return []
    with open(path) as f:
        try:
            rows = [{k: (int(v) if k == "epoch" else float(v)) for k, v in r.items() if v != ""}
                    for r in csv.DictReader(f)]
            return [r for r in rows if upto_epoch is None or r["epoch"] <= upto_epoch]
        except (ValueError, TypeError, KeyError, csv.Error) as err:
            raise UsageError(f"{path}: not a metrics file written by this loop ({err})") from None


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count(), "load": os.getloadavg(), "jax": jax.__version__,
            "devices": [str(d) for d in jax.devices()]}


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc, unit="step", leave=False, dynamic_ncols=True)


def _float_leaves(tree) -> list[tuple[str, jax.Array]]:
    return [(jax.tree_util.keystr(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
            if jnp.issubdtype(jnp.result_type(leaf), jnp.inexact)]


def guard_step(step: Callable, keep_good: bool = True) -> Callable:
    """(state, batch, epoch_key, i) -> (state, metrics, finite): `step(state, batch,
    fold_in(epoch_key, i))`, the key folded inside the compiled call (not eagerly on the host).
    finite: bool (1 + leaves,), whether the loss and then each floating leaf of a state (in
    tree order) is finite.

    keep_good=True (for --on-nan skip): the leaves of the new state; a step whose loss or new
    state holds a NaN or Inf leaves the state as it was.
    keep_good=False (for --on-nan stop, which discards the state anyway): the leaves of the
    state the step *started from*, i.e. the previous step's new state (`_FiniteRows` lines
    them up; `leaf_flags` checks the epoch's last state). Checked there, the reductions run
    beside the forward pass instead of after the optimiser's last write (benchmarks/README.md
    has the cost of each form)."""
    def guarded(state, batch, epoch_key, i):
        new_state, metrics = step(state, batch, jax.random.fold_in(epoch_key, i))
        loss_ok = jnp.all(jnp.isfinite(metrics["loss"]))
        if not keep_good:
            return new_state, metrics, jnp.concatenate([loss_ok[None], _leaf_flags(state)])
        finite = jnp.concatenate([loss_ok[None], _leaf_flags(new_state)])
        kept = jax.lax.cond(jnp.all(finite), lambda: new_state, lambda: state)
        return kept, metrics, finite
    return jax.jit(guarded, donate_argnums=0)


def _leaf_flags(state) -> jax.Array:
    """bool (leaves,): whether each floating leaf of `state` (in tree order) is all finite."""
    flags = [jnp.all(jnp.isfinite(leaf)) for _, leaf in _float_leaves(state)]
    return jnp.stack(flags) if flags else jnp.zeros((0,), bool)


leaf_flags = jax.jit(_leaf_flags)


_PARAMS = (".params", "['params']")  # a TrainState's parameters, or a state dict's


def _last_good(ckpt) -> str:
    latest = ckpt.latest()
    return (f"the last good checkpoint is epoch {latest} in {ckpt.directory}" if latest is not None
            else "no checkpoint had been written yet")


class _FiniteRows:
    """Per step of an epoch, whether its loss (and, for a guarded step, each leaf of its new
    state) was finite: a bool NumPy table, the device arrays fetched as they come (each check
    fetches only the steps since the last, with no compiled stack of a growing list).

    lagged=True: each step's flags hold the leaves of the state it started from (see
    `guard_step`), so row i takes its leaves from step i + 1 and the last row from `finish`
    (the epoch's final state); until then the last row's leaves count as finite."""

    def __init__(self, lagged: bool = False):
        self.pending, self.rows, self.guarded, self.lagged, self.final = [], [], False, lagged, None

    def add(self, flags: list, metrics: dict) -> None:
        self.guarded = bool(flags)
        self.pending.append(flags[0] if flags else metrics["loss"])

    def finish(self, final_flags) -> None:
        """The leaf flags of the state after the epoch's last step (lagged rows only)."""
        self.final = final_flags

    def table(self) -> np.ndarray:
        if self.pending:
            fetched = jax.device_get(self.pending)
            self.rows.extend(np.atleast_1d(np.isfinite(f) if f.dtype != bool else f) for f in fetched)
            self.pending = []
        rows = np.stack(self.rows)
        if not (self.lagged and self.guarded):
            return rows
        aligned = rows.copy()
        aligned[:-1, 1:] = rows[1:, 1:]
        aligned[-1, 1:] = True if self.final is None else np.asarray(jax.device_get(self.final))
        return aligned


def _check_finite(name: str, metrics: list[dict], rows: _FiniteRows, leaf_names: list[str],
                  epoch: int, ckpt, on_nan: str, end: bool) -> None:
    """Raise NonFiniteLoss naming the first step of this epoch whose loss (or, for a guarded step,
    new state) is NaN or Inf, and the first parameter that was; nothing when skipping them.
    An unguarded step's NaN stops the run whatever on_nan says (its state cannot be kept)."""
    finite = rows.table()
    bad = np.flatnonzero(~finite.all(axis=1))
    if rows.guarded and on_nan == "skip" and (not end or len(bad) < len(finite)):
        return
    if not bad.size:
        return
    i = int(bad[0])
    leaves = sorted((n for n, ok in zip(leaf_names, finite[i, 1:]) if not ok),
                    key=lambda n: not n.startswith(_PARAMS))       # parameters before optimiser state
    where = (f"first non-finite parameter {leaves[0]}" if leaves
             else "parameters still finite" if rows.guarded else "parameters not checked")
    what = ("every batch of the epoch was non-finite" if on_nan == "skip"
            else "stopped (--on-nan skip skips such batches)")
    raise NonFiniteLoss(f"{name}: non-finite at epoch {epoch}, step {i}: loss "
                        f"{float(metrics[i]['loss'])}, {where}; {what}; {_last_good(ckpt)}")


def run(config: LoopConfig, *, init: Callable[[], Any],
        step: Callable[[Any, Any, jax.Array], tuple[Any, dict]],
        batches: Callable[[int], Iterable], evaluate: Callable[[Any, int], dict] | None = None,
        plots: Callable[[Any, list[dict], Path], None] | None = None,
        config_dict: dict | None = None, name: str = "train",
        summarize: Callable[[Any], dict] | None = None, log_every: int = 20) -> dict:
    """Train for config.epochs epochs; returns the summary (also written to summary.json).

    `step`: (state, batch, key) -> (state, metrics), e.g. `jaxnn.train_step(...).step`. A
    `jax.jit` function runs under the NaN guard (`guard_step`, which compiles it with the key
    folded in and the state donated); any other callable (a sharded step placing its own
    arguments) is called as it is and only its loss is checked. It is compiled once on the
    first batch, timed apart. Batches must keep one shape (drop a ragged last batch) so the
    step compiles once. `summarize(state)` adds entries to the summary.
    """

    global _STARTUP
    config.validate()
    t_run = time.perf_counter()
    startup, _STARTUP = (t_run - START if _STARTUP is None else 0.0), 0.0  # once per process
    times = {"startup": startup, "compile": 0.0, "train": 0.0, "eval": 0.0, "checkpoint": 0.0,
             "plots": 0.0}
    out = Path(config.out)
    if config.resume:
        _check_same_config(out, config_dict or {})
    if not config.write:
        return _run(config, out, times, t_run, startup, init=init, step=step, batches=batches,
                    evaluate=evaluate, plots=plots, config_dict=config_dict, name=name,
                    summarize=summarize, log_every=log_every)
    lock = cli.run_lock(out)                 # one writer per folder, for the whole run
    try:
        # Checked under the lock. A run that was started and holds nothing yet resumes as a
        # fresh one; a command's own --resume check (cli.claim_out) refuses resuming an empty
        # --out.
        if not config.resume and cli.holds_run(out):
            raise UsageError(f"{out} already holds a run; pass --resume to continue it or choose "
                             f"another --out")
        summary = _run(config, out, times, t_run, startup, init=init, step=step, batches=batches,
                       evaluate=evaluate, plots=plots, config_dict=config_dict, name=name,
                       summarize=summarize, log_every=log_every)
    except BaseException:
        cli.release(lock, failed=True)   # a folder this run made and left empty is removed
        raise
    cli.release(lock)
    return summary


def _run(config: LoopConfig, out: Path, times: dict, t_run: float, startup: float, *, init, step,
         batches, evaluate, plots, config_dict, name, summarize, log_every) -> dict:
    from jaxnn.train.checkpoint import Checkpoints

    progress = cli.progress()
    progress.out = out
    state = jax.tree.map(lambda a: a.copy(), init())  # the step may donate it: keep the caller's
    ckpt = Checkpoints(out / "checkpoints", max_to_keep=config.keep_checkpoints)
    start_epoch, rows = 0, []
    if config.resume and ckpt.latest() is not None:
        t0 = time.perf_counter()
        start_epoch, state = ckpt.restore_latest(state)
        times["checkpoint"] += time.perf_counter() - t0
        rows = read_metrics(out / "metrics.csv", start_epoch)
        progress.checkpoint = f"epoch {start_epoch} ({ckpt.path(start_epoch)})"
        print(f"resumed from {ckpt.directory} at epoch {start_epoch}", flush=True)
    if config.write:
        write_atomic(out / "config.json", json.dumps(
            {"loop": dataclasses.asdict(config), **(config_dict or {})}, indent=2, default=str) + "\n")

    base_key = jax.random.key(config.seed)
    guarded = (guard_step(step, config.on_nan == "skip") if isinstance(step, jax.stages.Wrapped)
               else None)
    leaf_names = [n for n, _ in _float_leaves(state)]
    compiled = None
    for epoch in range(start_epoch + 1, config.epochs + 1):
        progress.epoch = epoch
        epoch_key = jax.random.fold_in(base_key, epoch)
        epoch_batches = batches(epoch)
        total = len(epoch_batches) if hasattr(epoch_batches, "__len__") else None
        bar = _progress(total, f"{name} epoch {epoch}/{config.epochs}", config.progress)
        lagged = guarded is not None and config.on_nan != "skip"
        metrics, finite, t_epoch, n_steps = [], _FiniteRows(lagged), time.perf_counter(), 0
        for i, batch in enumerate(epoch_batches):
            # A guarded step folds the key in itself: fold_in(epoch_key, i), the same key.
            args = ((epoch_key, np.int32(i)) if guarded is not None
                    else (jax.random.fold_in(epoch_key, i),))
            if compiled is None:
                t0 = time.perf_counter()
                if guarded is not None:
                    compiled = guarded.lower(state, batch, *args).compile()
                else:  # a step that compiles on its first call: book that call as compile
                    compiled = step
                    state, m, *flags = jax.block_until_ready(compiled(state, batch, *args))
                times["compile"] += time.perf_counter() - t0
                t_epoch += time.perf_counter() - t0
                if guarded is None:
                    metrics.append(m)
                    finite.add(flags, m)
                    n_steps += 1
                    continue
            state, m, *flags = compiled(state, batch, *args)
            metrics.append(m)
            finite.add(flags, m)
            n_steps += 1
            if i % log_every == log_every - 1:
                _check_finite(name, metrics, finite, leaf_names, epoch, ckpt, config.on_nan, False)
                if bar is not None:
                    bar.set_postfix(loss=f"{float(jnp.mean(m['loss'])):.4f}",  # the mean over an ensemble
                                    steps_s=f"{n_steps / (time.perf_counter() - t_epoch):.1f}")
                    bar.update(i + 1 - bar.n)
        if not metrics:
            raise UsageError(f"{name}: epoch {epoch} has no batches (is the dataset smaller than a batch?)")
        if lagged:
            finite.finish(leaf_flags(state))
        _check_finite(name, metrics, finite, leaf_names, epoch, ckpt, config.on_nan, True)
        kept = ([mm for mm, ok in zip(metrics, finite.table().all(axis=1)) if ok] if finite.guarded
                else metrics)
        # Fetched and averaged in NumPy (float64), not stacked by a compiled call.
        fetched = jax.device_get([{k: mm[k] for k in metrics[0]} for mm in kept])
        means = {k: float(np.mean(np.asarray([mm[k] for mm in fetched], np.float64))) for k in metrics[0]}
        if config.on_nan == "skip":
            means["skipped"] = len(metrics) - len(kept)
        epoch_seconds = time.perf_counter() - t_epoch
        times["train"] += epoch_seconds
        if bar is not None:
            bar.close()
        t0 = time.perf_counter()
        evaluated = evaluate(state, epoch) if evaluate is not None else {}
        times["eval"] += time.perf_counter() - t0
        rows.append({"epoch": epoch, **{f"train_{k}": v for k, v in means.items()}, **evaluated,
                     "epoch_seconds": epoch_seconds, "steps_per_second": n_steps / epoch_seconds})
        # Metrics first: after a crash between the two writes, resuming drops the rows past
        # the last checkpoint and recomputes them.
        if config.write:
            write_metrics(out / "metrics.csv", rows)
        t0 = time.perf_counter()
        if config.write:
            ckpt.save(epoch, state)
            progress.checkpoint = f"epoch {epoch} ({ckpt.path(epoch)})"
            progress.epoch = None                    # between epochs
        times["checkpoint"] += time.perf_counter() - t0
        shown = "  ".join(f"{k} {v:.4f}" for k, v in rows[-1].items()
                          if k != "epoch" and isinstance(v, float) and not k.startswith(("dx_", "dw_")))
        print(f"{name} epoch {epoch:3d}  {shown}", flush=True)

    if config.plots and config.write and rows and plots is not None:
        t0 = time.perf_counter()
        plots(state, rows, out / "plots")
        times["plots"] = time.perf_counter() - t0
        print(f"plots in {out / 'plots'}", flush=True)
    times["total"] = time.perf_counter() - t_run + startup
    # "seconds": this process; "train_seconds": every epoch of the run, resumed ones included.
    summary = {"config": config_dict or {}, "final": rows[-1] if rows else None,
               "epochs_run_now": config.epochs - start_epoch, "seconds": times,
               "compile_seconds": times["compile"], "train_seconds": sum(r["epoch_seconds"] for r in rows),
               "machine": machine(), **(summarize(state) if summarize is not None else {})}
    if config.write:
        write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def restore(out: str | Path, template: Any) -> tuple[int, Any]:
    """(epoch, state) from the newest intact checkpoint of a run `run` wrote to `out`;
    `template` (e.g. `init()`) gives the structure, shapes and dtypes."""
    from jaxnn.train.checkpoint import Checkpoints

    ckpt = Checkpoints(Path(out) / "checkpoints")
    if ckpt.latest() is None:
        raise UsageError(f"{out}: no checkpoint in {ckpt.directory}")
    return ckpt.restore_latest(template)


RESUMABLE_CHANGES = ("resume", "progress", "plots", "data_dir", "out")


def _check_same_config(out: Path, config_dict: dict) -> None:
    """A resumed run must be the same run: refuse settings that differ from config.json."""
    path = out / "config.json"
    if not path.exists():
        return
    try:
        saved = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as err:
        raise UsageError(f"{path}: not a config.json written by this loop ({err})") from None
    if not isinstance(saved, dict):
        raise UsageError(f"{path}: not a config.json written by this loop (not an object)")
    now = json.loads(json.dumps(config_dict, default=str))
    differ = sorted(k for k in set(saved) | set(now) if k != "loop" and k not in RESUMABLE_CHANGES
                    and k in saved and k in now and saved[k] != now[k])
    if differ:
        raise UsageError(f"--resume: {out} was started with other settings ("
                         + ", ".join(f"{k}={saved[k]!r} now {now[k]!r}" for k in differ)
                         + "); resume with the same ones or choose another --out")


def fold_epoch_key(seed: int, epoch: int) -> jax.Array:
    """The key of an epoch, as `run` derives it (for batches that need randomness)."""
    return jax.random.fold_in(jax.random.key(seed), epoch)


__all__ = ["ArgumentParser", "LoopConfig", "restore", "pid_alive", "remove_stale_temporaries", "save_figure",
           "NonFiniteLoss", "ON_NAN", "guard_step", "leaf_flags",
           "UsageError", "cli_main", "fold_epoch_key", "machine", "read_metrics", "run", "write_atomic",
           "write_metrics"]
