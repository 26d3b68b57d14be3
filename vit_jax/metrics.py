"""Where a run's numbers go: DIR/metrics.jsonl (one JSON object a line) and TensorBoard events.

Only process 0 writes. Each line carries `step` and `kind` ("train" or "eval"); eval lines carry
`accuracy` as a fraction in [0, 1]. The jsonl is appended to, so a resumed run continues the file.
"""

from __future__ import annotations

import json
import os

import jax
from absl import logging

from vit_jax import paths


class MetricWriter:
    def __init__(self, workdir: str, *, tensorboard: bool = True):
        self._active = jax.process_index() == 0
        self._path = paths.path(workdir) / "metrics.jsonl"
        self._tb = None
        if self._active and tensorboard and paths.is_remote(workdir) and _emulated():
            logging.warning("TensorFlow's GCS client ignores the emulator: no TensorBoard events")
        elif self._active and tensorboard:
            try:
                import tensorflow as tf  # deferred: TensorFlow, only for its event-file writer.
            except ImportError:  # A TensorFlow-free install (data.source='arrays'): jsonl only.
                logging.warning("TensorFlow is not installed: no TensorBoard events are written")
            else:
                self._tb = tf.summary.create_file_writer(str(paths.path(workdir) / "tensorboard"))

    def write(self, step: int, kind: str, values: dict) -> None:
        if not self._active:
            return
        values = {k: float(v) for k, v in values.items()}
        paths.append_text(
            self._path, json.dumps({"step": int(step), "kind": kind, **values}) + "\n"
        )
        if self._tb is not None:
            import tensorflow as tf  # deferred: TensorFlow, only when TensorBoard is written.

            with self._tb.as_default(step=int(step)):
                for k, v in values.items():
                    tf.summary.scalar(f"{kind}/{k}", v)

    def note(self, step: int, kind: str, fields: dict) -> None:
        """A jsonl-only line of any JSON values (no TensorBoard): what a resumed run changed."""
        if self._active:
            line = json.dumps({"step": int(step), "kind": kind, **fields}) + "\n"
            paths.append_text(self._path, line)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.flush()
            self._tb.close()


def read(workdir: str, kind: str | None = None) -> list[dict]:
    """The lines of DIR/metrics.jsonl, optionally only those of one kind."""
    path = paths.path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in paths.read_text(path).splitlines() if line.strip()]
    return [r for r in rows if kind is None or r.get("kind") == kind]


def _emulated() -> bool:
    """A GCS emulator is in use (the tests): TensorFlow would write to the real GCS instead."""
    return bool(os.environ.get("STORAGE_EMULATOR_HOST"))
