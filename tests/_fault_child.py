"""Children for the fault tests.

`python -m tests._fault_child STEP ARGS...`: experiments.train_lenet with ARGS, which SIGKILLs
itself halfway through writing checkpoint STEP (after some of the file's bytes reached the disk).

`python -m tests._fault_child toy --out DIR [--resume] [--die-at N] [--sleep S]` (or `start_toy`,
the same in a process forked from a server that has imported JAX already): the tiniest
run of the shared loop (a 16-weight state, 3 epochs of 4 batches, synthetic data that depends
only on (seed, epoch), every checkpoint kept) through `cli_main`. It counts its events: each
batch taken, each write into a checkpoint file, each rename into place (metrics.csv,
config.json, summary.json, a checkpoint); with --die-at N it SIGKILLs itself at its N-th event
(a checkpoint write first flushed to disk, so a partial file is left). --sleep S waits S s per
batch (to be caught mid-run). It prints "events N" when it finishes.
"""

import os
import signal
import sys

from tests._files import FileWrapper


class _Events:
    """Counts events; SIGKILLs this process at event `die_at`."""

    def __init__(self, die_at):
        self.count, self.die_at = 0, die_at

    def __call__(self, before_death=None):
        self.count += 1
        if self.count == self.die_at:
            if before_death is not None:
                before_death()
            os.kill(os.getpid(), signal.SIGKILL)


def toy(argv):
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    from experiments.common import cli, loop
    from jaxnn.train import checkpoint

    p = cli.parser("python -m tests._fault_child toy")
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--die-at", type=cli.positive_int, default=None)
    p.add_argument("--sleep", type=cli.nonnegative_float, default=0.0)
    p.add_argument("--epochs", type=cli.positive_int, default=3)
    args = p.parse_args(argv)
    events = _Events(args.die_at)

    class Counted(FileWrapper):
        def write(self, data):
            def flush():
                self.f.flush()
                os.fsync(self.f.fileno())
            events(flush)
            return self.f.write(data)

    def counted_open(path, mode="r", *a, **kw):
        f = open(path, mode, *a, **kw)
        return Counted(f) if "w" in mode else f

    real_replace = os.replace

    def counted_replace(src, dst, *a, **kw):
        events()
        return real_replace(src, dst, *a, **kw)

    checkpoint.open = counted_open
    os.replace = counted_replace

    @jax.jit
    def step(state, x, key):
        noise = 0.01 * jax.random.normal(key, x.shape)
        w = state["params"]["w"] - 0.1 * (state["params"]["w"] - x) + noise
        return ({"params": {"w": w}, "opt": {"m": 0.9 * state["opt"]["m"] + jnp.sum(w)}},
                {"loss": jnp.sum((w - x) ** 2)})

    def batches(epoch):
        rng = np.random.default_rng([7, epoch])
        for _ in range(4):
            events()
            if args.sleep:
                time.sleep(args.sleep)
            yield jnp.asarray(rng.normal(size=16), jnp.float32)

    out = cli.claim_out(args.out, resume=args.resume)
    config = loop.LoopConfig(out=str(out), epochs=args.epochs, seed=3, resume=args.resume,
                             progress=False, plots=False, keep_checkpoints=args.epochs)
    loop.run(config, init=lambda: {"params": {"w": jnp.zeros(16)}, "opt": {"m": jnp.zeros(())}},
             step=step, batches=batches, name="toy", config_dict={"toy": 1})
    print(f"events {events.count}", flush=True)
    return 0


PRELOAD = ["jax", "jax.numpy", "numpy", "experiments.common.loop", "jaxnn.train.checkpoint",
           "tests._files", "tests._fault_child"]


def _toy_process(argv, log):
    """The target of a forked toy run: stdout and stderr into `log`.out / `log`.err."""
    for fd, suffix in ((1, ".out"), (2, ".err")):
        f = os.open(log + suffix, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(f, fd)
        os.close(f)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    from experiments.common import loop

    code = loop.cli_main(toy, argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_CONTEXT = None


def start_toy(argv, log):
    """Start `toy` with `argv` in a process forked from a server that preloads JAX (a fraction
    of a fresh interpreter's start); returns the multiprocessing.Process."""
    import multiprocessing

    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    proc = _CONTEXT.Process(target=_toy_process, args=(list(argv), os.fspath(log)))
    proc.start()
    return proc


class _KilledMidWrite(FileWrapper):
    """A file that lets two writes through, then flushes them to disk and SIGKILLs the process."""

    def __init__(self, f):
        super().__init__(f)
        self.writes = 0

    def write(self, data):
        if self.writes == 2:
            self.f.flush()
            os.fsync(self.f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        self.writes += 1
        return self.f.write(data)


def main():
    from experiments.common import loop

    if sys.argv[1] == "toy":
        return loop.cli_main(toy, sys.argv[2:])

    from experiments import train_lenet
    from jaxnn.train import checkpoint

    step, argv = int(sys.argv[1]), sys.argv[2:]

    def dying_open(path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)
        return _KilledMidWrite(f) if f".step_{step:08d}.ckpt." in os.fspath(path) else f

    checkpoint.open = dying_open
    return loop.cli_main(train_lenet.main, argv)


if __name__ == "__main__":
    sys.exit(main())
