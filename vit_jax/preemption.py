"""Spot / preemptible VMs: SIGTERM → finish the step, checkpoint, exit with EXIT_PREEMPTED.

A Cloud TPU spot VM gets SIGTERM shortly before it is taken away. The training loop asks
`Stop.requested(step)` after every step; when it says yes the loop saves a checkpoint and raises
`Preempted`, and `vit_jax.main` exits with EXIT_PREEMPTED so a launcher can tell "re-create the VM
and re-run the same command" (which resumes from that checkpoint) from a real failure.
"""

from __future__ import annotations

import signal
import threading

import jax

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: "try again later". Launchers and tests rely on this number.


class Preempted(Exception):
    """Raised by the training loop after it checkpointed at `step` on SIGTERM."""

    def __init__(self, step: int):
        super().__init__(f"preempted (SIGTERM): checkpoint saved at step {step}; re-run to resume")
        self.step = step


class Stop:
    """Whether to stop after this step.

    One process: its own SIGTERM flag. Several processes: JAX's preemption sync point, so every
    process stops (and saves) at the same step even if the signal reached them steps apart —
    otherwise the first to save would wait forever for the others in the checkpoint's collective.
    """

    def __init__(self):
        self.signalled = False
        self._multi = jax.process_count() > 1
        # jax.distributed installs its own SIGTERM notifier; Python handlers live in the main
        # thread only (training started from another thread keeps the default: terminate).
        self._own = not self._multi and threading.current_thread() is threading.main_thread()
        if self._own:
            self._previous = signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        del signum, frame
        self.signalled = True

    def requested(self, step: int) -> bool:
        if self._multi:
            from jax.experimental import multihost_utils

            return multihost_utils.reached_preemption_sync_point(step)
        return self.signalled

    def close(self) -> None:
        if self._own:
            signal.signal(signal.SIGTERM, self._previous)
