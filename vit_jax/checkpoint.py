"""Orbax checkpoints of the train state: async saves, retention, resume onto any mesh.

Restores always go through an *abstract* target (shapes + shardings), so a checkpoint written by an
FSDP run on 8 devices or by several processes restores on one CPU or onto another mesh: Orbax reads
each shard where the target wants it.
"""

from __future__ import annotations

import os

import orbax.checkpoint as ocp
from absl import logging


class Checkpointer:
    """Saves and restores the train state in `directory` (one sub-folder per step).

    Keeps the last `keep` steps, plus every `keep_every`-th step for good. Saves are asynchronous
    and committed atomically (Orbax writes to a temporary folder and renames it when complete), so
    a run killed mid-save leaves the previous checkpoint as the latest.
    """

    def __init__(self, directory: str, *, keep: int = 3, keep_every: int = 0, asynchronous=True):
        self.directory = os.path.abspath(directory) if "://" not in directory else directory
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            keep_period=keep_every or None,
            enable_async_checkpointing=asynchronous,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, state) -> None:
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore(self, abstract_state, step: int | None = None):
        """The state at `step` (default latest) laid out like `abstract_state` (ShapeDtypeStructs)."""
        step = self.latest_step() if step is None else step
        logging.info("Restoring checkpoint step %d from %s", step, self.directory)
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
