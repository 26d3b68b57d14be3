"""Weights of a training run: DIR/config.json (what model, what data) + DIR/checkpoints (Orbax).

`path` may be the workdir, its checkpoints/ folder or one step folder; config.json is looked for
there and up to two levels above. Class names come from DIR/dataset.json when train.py wrote it,
else from the folder dataset's class sub-folders when they are still there.
"""

from __future__ import annotations

import json
import logging

from etils import epath

from vit_jax import paths
from vit_jax.interop import tree

_ARCH = ("classifier", "representation_size", "posemb", "gelu")


def read(path: str, *, load_params) -> tuple[dict, tuple[str, dict] | None, dict]:
    """(canonical flat params, (model, overrides) from config.json or None, meta).

    `meta` holds the run's `image_size` and `class_names` (None when unknown).
    """
    run_dir = find_run_dir(path)
    config = read_json(run_dir / "config.json") if run_dir else None
    flat = tree.unstack_blocks(tree.flatten(load_params(str(path))))
    cfg_model = (config or {}).get("model", {})
    named = None
    if cfg_model.get("name"):
        overrides = {k: cfg_model.get(k) for k in _ARCH if cfg_model.get(k) is not None}
        named = (cfg_model["name"], overrides)
    data = (config or {}).get("data", {})
    meta = {"image_size": data.get("image_size"), "class_names": _class_names(run_dir, data)}
    return flat, named, meta


def find_run_dir(path: str) -> epath.Path | None:
    """The folder holding config.json: `path` or one of its two parents."""
    p = paths.path(path)
    for candidate in (p, p.parent, p.parent.parent):
        if (candidate / "config.json").exists():
            return candidate
    return None


def read_json(path) -> dict | None:
    """A small JSON file's contents, or None when absent or unreadable (logged)."""
    p = epath.Path(path)
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        logging.warning("%s: unreadable (%s); ignored", p, e)
        return None


def _class_names(run_dir, data) -> tuple[str, ...] | None:
    info = read_json(run_dir / "dataset.json") if run_dir else None
    if info and info.get("class_names"):
        return tuple(info["class_names"])
    root, split = data.get("root"), data.get("train_split") or "train"
    if data.get("source") == "folder" and root and paths.isdir(paths.path(root) / split):
        return tuple(sorted(d.name for d in (paths.path(root) / split).iterdir() if d.is_dir()))
    return None
