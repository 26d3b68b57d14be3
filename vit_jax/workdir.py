"""A run's workdir is checked against the new config before anything is written to it.

A workdir that already holds a run (DIR/config.json) is only re-opened by a config that fits it:
the keys that decide what the checkpoints hold (model architecture, parameter dtype, input size,
dataset, optimizer) must be the same, else the command stops with one line naming the differing
keys and both values. Nothing is written before that check, so a mistyped command never damages
a good run: its config.json, checkpoints and metrics stay as they were and `vit_jax.load` keeps
working. `restart=True` starts over by MOVING the old run aside (DIR.old-<time>), never deleting.
Any other change (more steps, another eval interval, learning rate, ...) is compatible: the run
resumes and the change is returned so the caller records it in metrics.jsonl.
"""

from __future__ import annotations

import json
import os
import tempfile
import time

from vit_jax import config_lib, paths

# Keys whose change makes the old checkpoints unusable or the run another experiment.
LAYOUT_KEYS = (
    "model.name",
    "model.param_dtype",
    "model.classifier",
    "model.representation_size",
    "model.posemb",
    "model.scan",
    "data.source",
    "data.name",
    "data.image_size",
    "optim.name",
    "optim.freeze",
    "loss",
)
CONFIG = "config.json"
DATASET = "dataset.json"


class WorkdirError(config_lib.ConfigError):
    """The workdir holds another run or cannot be written; nothing was written to it."""


def prepare(config, workdir: str, *, dataset: dict, restart: bool = False, primary: bool = True):
    """Checks `workdir` against `config`, then writes config.json and dataset.json.

    Args:
      config: the new run's config (validated).
      workdir: the run directory; created when missing.
      dataset: {'num_classes', 'class_names'} of the new run's data (written to dataset.json).
      restart: start over: move any old run aside (never deleted) instead of resuming it.
      primary: whether this process writes (process 0); the others only check.

    Returns: {key: [old, new]} of the compatible changes against the run found (empty if new).
    """
    new = _flat(json.loads(config.to_json_best_effort()))
    old = _read_json(paths.path(workdir) / CONFIG)
    changes = {}
    if old is not None and restart:
        if primary:
            print(f"Moved the old run in {workdir} to {move_aside(workdir)}")
    elif old is not None:
        old_dataset = _read_json(paths.path(workdir) / DATASET) or {}
        clash = _clashes(_flat(old), new, old_dataset, dataset)
        if clash:
            raise WorkdirError(
                f"{workdir} holds another run ({'; '.join(clash)}): use a new --workdir, "
                "or --restart to move the old run aside"
            )
        changes = {k: [v, new.get(k)] for k, v in _flat(old).items() if new.get(k) != v}
    if primary:
        check_writable(workdir)
        text = config.to_json_best_effort(indent=2, sort_keys=True)
        paths.write_atomic(paths.path(workdir) / CONFIG, text.encode())
        paths.write_atomic(paths.path(workdir) / DATASET, json.dumps(dataset).encode())
    return changes


def _clashes(old: dict, new: dict, old_dataset: dict, dataset: dict) -> list[str]:
    """'key: old → new' for each layout key that differs (and the class count)."""
    out = [f"{k}: {old.get(k)!r} → {new.get(k)!r}" for k in LAYOUT_KEYS if old.get(k) != new.get(k)]
    before = old_dataset.get("num_classes")
    if before is not None and before != dataset["num_classes"]:
        out.append(f"classes: {before} → {dataset['num_classes']}")
    return out


def move_aside(workdir: str) -> str:
    """Renames `workdir` to a free `<workdir>.old-<UTC time>` sibling; returns the new name."""
    if paths.is_remote(workdir):  # Object stores have no folder rename; copying is the user's call.
        raise WorkdirError(f"--restart cannot move {workdir} aside on GCS: use a new --workdir")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    target, n = f"{workdir.rstrip('/')}.old-{stamp}", 1
    while os.path.exists(target):
        target, n = f"{workdir.rstrip('/')}.old-{stamp}-{n}", n + 1
    os.rename(workdir, target)
    return target


def check_writable(workdir: str) -> None:
    """Creates `workdir`; a one-line error when files cannot be created in it."""
    if paths.is_remote(workdir):
        paths.check_writable(workdir)  # Names the bucket and the fix (missing, or denied).
        return
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as e:
        raise WorkdirError(f"workdir {workdir} is not writable: {e.strerror}") from None


def _read_json(path):
    if not paths.exists(path):
        return None
    try:
        return json.loads(paths.read_text(path))
    except (OSError, ValueError) as e:
        raise WorkdirError(f"{path}: unreadable ({e}); use a new --workdir or --restart") from None


def _flat(d: dict, prefix: str = "") -> dict:
    """{'model.name': ...}; lists become tuples so JSON and config values compare equal."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flat(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = _freeze(v)
    return out


def _freeze(v):
    return tuple(_freeze(x) for x in v) if isinstance(v, list | tuple) else v
