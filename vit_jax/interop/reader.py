"""Weights from anywhere → one canonical form (`Weights`): the reading half of interop.

`read` dispatches on what `path` is — a training workdir or Orbax checkpoint (run.py), a vit_jax /
big_vision .npz (npz.py), a timm .safetensors file (timm.py) or a Hugging Face ViT folder (hf.py) —
and names the registry model from
the run's config.json, the file's metadata, or its shapes (infer.py). A pickle-based format
(.pth, .pt, .bin, .ckpt, .pkl) is refused, never opened.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vit_jax import errors, models, paths
from vit_jax.interop import hf, infer, npz, run, timm

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle", ".h5")
_ARCH_KEYS = ("classifier", "representation_size", "posemb", "gelu")


@dataclasses.dataclass
class Weights:
    """Canonical weights and what is known about them."""

    params: dict[str, np.ndarray]  # Flat 'a/b/c' → array, Linen names, blocks unrolled.
    model: str  # Registry name.
    overrides: dict  # Architecture overrides for models.create (pooling, pre-logits, GELU, ...).
    source: str  # Where they came from (for messages).
    image_size: int | None = None  # Native resolution, when known.
    class_names: tuple[str, ...] | None = None
    grid: tuple[int, int] | None = None  # Patch grid of the position embedding.

    @property
    def num_classes(self) -> int | None:
        head = self.params.get("head/kernel")
        return None if head is None else int(head.shape[-1])


def read(path: str, *, model: str | None = None) -> Weights:
    """Weights of a training workdir / Orbax checkpoint, an .npz, a timm .safetensors file, or a
    Hugging Face ViT folder (config.json + model.safetensors).

    `model` names the registry model when the file cannot say (published .npz files); otherwise
    it is read from the run's config.json or the file's metadata, or inferred from the shapes.
    """
    lower = str(path).lower()
    if lower.endswith(PICKLE_SUFFIXES):
        raise errors.UserError(
            f"{path}: pickle-based checkpoints are refused (they can run code); convert it to "
            f".safetensors first, e.g. safetensors.torch.save_file(state_dict, 'model.safetensors')"
        )
    if lower.endswith(".npz"):
        return _from_flat(npz.to_canonical(npz.read(path)), path, model, {})
    if lower.endswith(".safetensors"):
        return _read_timm(path, model)
    hf_config = run.read_json(f"{str(path).rstrip('/')}/{hf.CONFIG}")
    if hf.is_folder(hf_config):
        flat, meta = hf.read(path, hf_config)
        return _from_flat(flat, path, model or meta["model"], meta)
    if not paths.exists(path):
        raise errors.MissingFile(f"{path}: not found")
    if not paths.isdir(path):
        raise errors.UserError(
            f"{path}: unsupported weights (expected a workdir or Orbax checkpoint directory, "
            f"an .npz or a .safetensors file)"
        )
    return _read_run(path, model)


def _read_run(path, model) -> Weights:
    from vit_jax import checkpoint  # deferred: Orbax/TensorStore, only for run directories.

    flat, named, meta = run.read(path, load_params=checkpoint.load_params)
    if model is None and named is not None:
        model, overrides = named
        return _weights(flat, path, model, overrides, meta, infer.describe(flat))
    return _from_flat(flat, path, model, meta)


def _from_flat(flat, source, model, meta) -> Weights:
    """Weights whose model (and its overrides) the shapes tell, or `model` when given."""
    arch = infer.describe(flat)
    if model is None:
        model, overrides = infer.find_model(arch)
    else:
        overrides = infer.overrides_for(model, arch)
    overrides.update({k: meta[k] for k in _ARCH_KEYS if meta.get(k) is not None})
    return _weights(flat, source, model, overrides, meta, arch)


def _weights(flat, source, model, overrides, meta, arch) -> Weights:
    return Weights(
        params=flat,
        model=model,
        overrides=overrides,
        source=str(source),
        image_size=meta.get("image_size") or infer.native_size(model, arch),
        class_names=tuple(meta["class_names"]) if meta.get("class_names") else None,
        grid=arch.grid,
    )


def _read_timm(path, model) -> Weights:
    sd, meta = timm.read(path)
    model = model or meta.get("model")
    if model is None:  # Heads are not in a timm state dict: the registry has them.
        hint = infer.describe(timm.from_timm(sd, num_heads=1))
        hint = dataclasses.replace(hint, num_heads=None)
        model, _ = infer.find_model(hint)
    heads = models.spec(model).num_heads
    flat = timm.from_timm(sd, num_heads=heads)
    meta = dict(meta)
    meta.setdefault("gelu", "exact")  # timm's default GELU.
    return _from_flat(flat, path, model, meta)
