"""Orbax checkpoints of the train state: async saves, retention, resume onto any mesh.

Restores always go through an *abstract* target (shapes + shardings), so a checkpoint written by an
FSDP run on 8 devices or by several processes restores on one CPU or onto another mesh: Orbax reads
each shard where the target wants it. A step that cannot be read (truncated, corrupt) is moved
aside with a warning and the previous one is used; a step whose shapes do not fit the target is a
config mismatch, reported as one line naming the key, and never skipped silently.
"""

from __future__ import annotations

import time

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from vit_jax import errors, param_paths, paths

CHECKPOINTS = "checkpoints"  # Sub-folder of a training workdir.


class Checkpointer:
    """Saves and restores the train state in `directory` (one sub-folder per step).

    Keeps the last `keep` steps, plus every `keep_every`-th step for good. Saves are asynchronous
    and committed atomically (Orbax writes to a temporary folder and renames it when complete), so
    a run killed mid-save leaves the previous checkpoint as the latest; its temporary folder is
    removed when the directory is opened again.
    """

    def __init__(self, directory: str, *, keep: int = 3, keep_every: int = 0, asynchronous=True):
        self.directory = str(paths.path(directory))  # Orbax wants local paths absolute.
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            keep_period=keep_every or None,
            enable_async_checkpointing=asynchronous,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=ocp.StandardCheckpointHandler()
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state) -> None:
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore(self, abstract_state, step: int | None = None):
        """The state at `step` (default: the latest readable) laid out like `abstract_state`.

        With `step=None`, unreadable steps are moved to `<directory>.corrupt/` with a warning and
        the next older one is tried; no readable step raises FileNotFoundError.
        """
        if step is not None:
            return self._restore(step, abstract_state)
        for candidate in reversed(self.all_steps()):
            try:
                return self._restore(candidate, abstract_state)
            except CorruptCheckpointError as e:
                logging.warning("%s; trying the previous checkpoint", e)
                self._quarantine(candidate)
        raise errors.MissingFile(f"{self.directory}: no readable checkpoint")

    def _restore(self, step, abstract_state):
        where = f"{self.directory} step {step}"
        meta = _metadata(self._manager, step, where=where)
        check_fits(meta, abstract_state, where=where)
        logging.info("Restoring %s", where)
        try:
            return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))
        except Exception as e:
            if not is_read_error(e):
                raise
            raise CorruptCheckpointError(f"{where}: unreadable ({_line(e)})") from None

    def _quarantine(self, step: int) -> None:
        """Moves an unreadable step out of the manager's sight (kept for inspection)."""
        if jax.process_index() == 0:
            src = paths.path(self.directory) / str(step)
            dst = paths.path(f"{self.directory}.corrupt") / f"{step}-{int(time.time())}"
            paths.makedirs(dst.parent)
            src.rename(dst)
            logging.warning("Moved unreadable checkpoint %s to %s", src, dst)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"vit_jax_quarantine_{step}")
        self._manager.reload()

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


class CorruptCheckpointError(RuntimeError):
    """A checkpoint step exists but cannot be read."""


def find(path: str) -> tuple[str, int | None]:
    """(checkpoint directory, step or None = latest) of a workdir, checkpoint dir or step dir."""
    p = paths.path(path)
    if not p.exists():
        raise errors.MissingFile(f"{path}: not found")
    if (p / CHECKPOINTS).is_dir():
        return str(p / CHECKPOINTS), None
    if p.name.isdigit() and (p / "_CHECKPOINT_METADATA").exists():
        return str(p.parent), int(p.name)
    if any(c.name.isdigit() for c in p.iterdir()):
        return str(p), None
    raise errors.MissingFile(f"{path}: no Orbax checkpoint (expected {CHECKPOINTS}/<step>/ in it)")


def load_params(path: str, *, step: int | None = None, target=None):
    """The params of a checkpoint: a train state's or a params-only export's.

    `path` is a workdir, checkpoint directory or step directory. `target` (a tree of
    jax.ShapeDtypeStruct with shardings) places them; None gives host numpy arrays. Unreadable
    steps are skipped with a warning (read-only: nothing is moved).
    """
    directory, found = find(path)
    step = found if step is None else step
    options = ocp.CheckpointManagerOptions(create=False)
    with ocp.CheckpointManager(
        directory, options=options, item_handlers=ocp.PyTreeCheckpointHandler()
    ) as manager:
        steps = [step] if step is not None else sorted(manager.all_steps(), reverse=True)
        if not steps:
            raise errors.MissingFile(f"{directory}: no checkpoint steps")
        for s in steps:
            try:
                return _read_params(manager, s, target, where=f"{directory} step {s}")
            except CorruptCheckpointError as e:
                if len(steps) == 1:
                    raise errors.UserError(str(e)) from None
                logging.warning("%s; trying the previous checkpoint", e)
    raise errors.UserError(f"{directory}: no readable checkpoint")


def _read_params(manager, step, target, *, where):
    meta = _metadata(manager, step, where=where)
    if not isinstance(meta, dict) or "params" not in meta:
        raise errors.UserError(f"{where}: no 'params' in the checkpoint")
    meta = meta["params"]
    if target is None:
        target = jax.tree.map(lambda m: np.empty(0, m.dtype), meta)  # Structure + dtypes only.
        restore_args = jax.tree.map(lambda m: ocp.RestoreArgs(restore_type=np.ndarray), meta)
        item = meta
    else:
        check_fits(meta, target, where=where)
        item, restore_args = target, ocp.checkpoint_utils.construct_restore_args(target)
    args = ocp.args.PyTreeRestore(
        item={"params": item}, restore_args={"params": restore_args}, partial_restore=True
    )
    try:
        return manager.restore(step, args=args)["params"]
    except Exception as e:
        if not is_read_error(e):
            raise
        raise CorruptCheckpointError(f"{where}: unreadable ({_line(e)})") from None


def params_metadata(path: str, *, step: int | None = None) -> dict:
    """Shapes and dtypes of a checkpoint's params, as a tree of jax.ShapeDtypeStruct (no reads)."""
    directory, found = find(path)
    step = found if step is None else step
    options = ocp.CheckpointManagerOptions(create=False)
    with ocp.CheckpointManager(
        directory, options=options, item_handlers=ocp.PyTreeCheckpointHandler()
    ) as manager:
        step = manager.latest_step() if step is None else step
        if step is None:
            raise errors.MissingFile(f"{directory}: no checkpoint steps")
        meta = _tree(manager.item_metadata(step))
    if not isinstance(meta, dict) or "params" not in meta:
        raise errors.UserError(f"{directory} step {step}: no 'params' in the checkpoint")
    return jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), meta["params"])


def save_params(directory: str, params, *, step: int = 0) -> None:
    """Writes a params-only checkpoint ({'params': params}) that `load_params` reads."""
    options = ocp.CheckpointManagerOptions(enable_async_checkpointing=False)
    with ocp.CheckpointManager(directory, options=options) as manager:
        manager.save(step, args=ocp.args.StandardSave({"params": params}), force=True)
        manager.wait_until_finished()


def check_fits(saved, target, *, where: str) -> None:
    """One-line ValueError naming the first key that is missing or has another shape."""
    saved_flat = _by_path(saved)
    target_flat = _by_path(target)
    for key, leaf in target_flat.items():
        if key not in saved_flat:
            raise errors.UserError(f"{where}: missing key {key!r}")
        shape = tuple(getattr(saved_flat[key], "shape", ()))
        if shape != tuple(leaf.shape):
            raise errors.UserError(
                f"{where}: key {key!r} has shape {shape}, the model wants {tuple(leaf.shape)}"
            )
    extra = sorted(set(saved_flat) - set(target_flat))
    if extra:
        raise errors.UserError(f"{where}: unexpected key {extra[0]!r} (another model or config?)")


def _by_path(tree) -> dict:
    """{'a/b/c': leaf}; Orbax metadata objects and arrays are leaves (anything with a shape)."""
    is_leaf = lambda x: hasattr(x, "shape") and not isinstance(x, dict)  # noqa: E731
    leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
    return {param_paths.path_str(p): leaf for p, leaf in leaves if is_leaf(leaf)}


def _metadata(manager, step: int, *, where: str):
    """The stored tree of shapes; CorruptCheckpointError when it cannot be read or is empty."""
    try:
        meta = _tree(manager.item_metadata(step))
    except Exception as e:  # noqa: BLE001  (any failure to read means an unusable step)
        raise CorruptCheckpointError(f"{where}: unreadable metadata ({_line(e)})") from None
    if meta is None or not _by_path(meta):
        raise CorruptCheckpointError(f"{where}: no metadata (incomplete or damaged step)")
    return meta


# TensorStore status codes and messages of data that is missing, short or undecodable.
_READ_ERRORS = ("DATA_LOSS", "OUT_OF_RANGE", "NOT_FOUND", "Error reading", "Error decoding")


def is_read_error(e: BaseException) -> bool:
    """Whether a restore failed on the stored bytes (not on memory, devices or shardings)."""
    if isinstance(e, FileNotFoundError | EOFError):
        return True
    return any(marker in str(e) for marker in _READ_ERRORS)


def _tree(meta):
    return meta.tree if hasattr(meta, "tree") else meta


def _line(e: Exception) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:300]
