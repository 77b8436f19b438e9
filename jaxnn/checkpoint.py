"""Crash-safe checkpoints of a training state pytree (params, optimiser state, counters).

A thin layer over orbax-checkpoint (the `experiments` extra): each save is written to a
temporary directory and renamed into place once complete, so a run killed mid-save leaves
the previous checkpoint intact. Restoring needs a template pytree (e.g. a freshly
initialised state) for the structure and dtypes.
"""

from __future__ import annotations

import os
from typing import Any

import jax


class Checkpoints:
    """Numbered checkpoints in `directory`; keeps the newest `max_to_keep`.

    save(step, state) writes and waits until the write is final; latest() -> step or None;
    restore(step, template) -> state with template's structure.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 2):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

    def save(self, step: int, state: Any) -> None:
        self._manager.save(step, args=self._ocp.args.StandardSave(state))
        self._manager.wait_until_finished()

    def latest(self) -> int | None:
        return self._manager.latest_step()

    def restore(self, step: int, template: Any) -> Any:
        abstract = jax.tree.map(self._ocp.utils.to_shape_dtype_struct, template)
        return self._manager.restore(step, args=self._ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()
