"""`python -m tests._fault_child STEP ARGS...`: experiments.train_lenet with ARGS, which SIGKILLs
itself halfway through writing checkpoint STEP (after some of the file's bytes reached the disk)."""

import os
import signal
import sys

from experiments.common import loop
from experiments import train_lenet
from jaxnn.train import checkpoint
from tests._files import FileWrapper


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
    step, argv = int(sys.argv[1]), sys.argv[2:]

    def dying_open(path, mode="r", *args, **kwargs):
        f = open(path, mode, *args, **kwargs)
        return _KilledMidWrite(f) if f".step_{step:08d}.ckpt." in os.fspath(path) else f

    checkpoint.open = dying_open
    return loop.cli_main(train_lenet.main, argv)


if __name__ == "__main__":
    sys.exit(main())
