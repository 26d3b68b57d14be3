"""Weights of a training run: DIR/config.json (what model, what data) + DIR/checkpoints (Orbax).

`path` may be the workdir, its checkpoints/ folder or one step folder; config.json is looked for
there and up to two levels above. Class names come from DIR/dataset.json when train.py wrote it,
else from the folder dataset's class sub-folders when they are still there.
"""

from __future__ import annotations

from etils import epath

from vit_jax import paths
from vit_jax.interop import infer, tree

_ARCH = ("classifier", "representation_size", "posemb", "gelu")


def read(path: str, *, model: str | None, load_params):
    from vit_jax import interop, models

    run_dir = find_run_dir(path)
    config = interop.read_json(run_dir / "config.json") if run_dir else None
    flat = tree.unstack_blocks(tree.flatten(load_params(str(path))))
    cfg_model = (config or {}).get("model", {})
    if model is None and cfg_model.get("name"):
        model = cfg_model["name"]
        overrides = {k: cfg_model.get(k) for k in _ARCH if cfg_model.get(k) is not None}
        if overrides.get("representation_size") == -1:
            overrides["representation_size"] = models.spec(model).hidden_size
        arch = infer.describe(flat)
    else:
        arch = infer.describe(flat)
        model, overrides = (
            infer.find_model(arch) if model is None else (model, infer.overrides_for(model, arch))
        )
    data = (config or {}).get("data", {})
    return interop.Weights(
        params=flat,
        model=model,
        overrides=overrides,
        source=str(path),
        image_size=data.get("image_size") or interop._native_size(model, arch),
        class_names=_class_names(run_dir, data),
        grid=arch.grid,
    )


def find_run_dir(path: str) -> epath.Path | None:
    """The folder holding config.json: `path` or one of its two parents."""
    p = paths.path(path)
    for candidate in (p, p.parent, p.parent.parent):
        if (candidate / "config.json").exists():
            return candidate
    return None


def _class_names(run_dir, data) -> tuple[str, ...] | None:
    from vit_jax import interop

    info = interop.read_json(run_dir / "dataset.json") if run_dir else None
    if info and info.get("class_names"):
        return tuple(info["class_names"])
    root, split = data.get("root"), data.get("train_split") or "train"
    if data.get("source") == "folder" and root and paths.isdir(paths.path(root) / split):
        return tuple(sorted(d.name for d in (paths.path(root) / split).iterdir() if d.is_dir()))
    return None
