"""Weights from anywhere → one canonical form → any of our models.

    weights = interop.read("ViT-B_16.npz")            # or a workdir, Orbax dir, timm .safetensors
    params = interop.fit(weights.params, abstract_params, source=weights.source)

`read` dispatches on what `path` is; a pickle-based format (.pth, .pt, .bin, .ckpt, .pkl) is
refused, never opened. `fit` maps canonical weights onto a model's parameter tree (scanned or not),
resampling the position embedding to the model's grid, and raises one line naming the file and
the key on any missing key or shape mismatch.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re

import numpy as np

from vit_jax import paths, posemb
from vit_jax.interop import infer, npz, timm, tree

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle", ".h5")
POSEMB = "Transformer/posembed_input/pos_embedding"
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
    """Weights of a training workdir / Orbax checkpoint, an .npz, or a timm .safetensors file.

    `model` names the registry model when the file cannot say (published .npz files); otherwise
    it is read from the run's config.json or the file's metadata, or inferred from the shapes.
    """
    lower = str(path).lower()
    if lower.endswith(PICKLE_SUFFIXES):
        raise ValueError(
            f"{path}: pickle-based checkpoints are refused (they can run code); convert it to "
            f".safetensors first, e.g. safetensors.torch.save_file(state_dict, 'model.safetensors')"
        )
    if lower.endswith(".npz"):
        return _from_flat(npz.to_canonical(npz.read(path)), path, model, {})
    if lower.endswith(".safetensors"):
        return _read_timm(path, model)
    from vit_jax import checkpoint  # Orbax only when needed.

    if not _exists(path):
        raise FileNotFoundError(f"{path}: not found")
    if not _is_dir(path):
        raise ValueError(
            f"{path}: unsupported weights (expected a workdir or Orbax checkpoint directory, "
            f"an .npz or a .safetensors file)"
        )
    from vit_jax.interop import run

    return run.read(path, model=model, load_params=checkpoint.load_params)


def fit(
    flat: dict[str, np.ndarray],
    abstract,
    *,
    source: str,
    old_grid: tuple[int, int] | None = None,
    new_grid: tuple[int, int] | None = None,
    fresh: tuple[str, ...] = (),
) -> dict:
    """Canonical weights → a nested numpy tree with `abstract`'s structure, shapes and dtypes.

    `abstract`: the model's params as jax.ShapeDtypeStruct (from jax.eval_shape); a scanned
    model's stacked blocks are filled from the unrolled ones. `fresh`: regexes of params set to
    zeros instead (a new head); source keys they match are dropped. The position embedding is
    resampled from `old_grid` to `new_grid` (default: square grids) when their sizes differ;
    a class token the model does not have is dropped with its position-embedding row.
    """
    target = tree.flatten(abstract)
    if any(k.startswith(tree.BLOCK + "/") for k in target):
        flat = tree.stack_blocks(flat)
    is_fresh = lambda k: any(re.search(p, k) for p in fresh)  # noqa: E731
    flat = {k: v for k, v in flat.items() if not is_fresh(k)}
    if POSEMB in flat and POSEMB in target:
        flat[POSEMB] = _fit_posemb(flat, target, old_grid, new_grid)
    if "cls" in flat and "cls" not in target:  # Pooling without a class token now.
        flat.pop("cls")
    out = {}
    for key, want in target.items():
        if is_fresh(key):
            out[key] = np.zeros(want.shape, want.dtype)
            continue
        if key not in flat:
            raise ValueError(f"{source}: missing key {key!r} (the model needs it)")
        value = np.asarray(flat[key])
        if value.shape != tuple(want.shape):
            raise ValueError(
                f"{source}: key {key!r} has shape {value.shape}, "
                f"the model wants {tuple(want.shape)}"
            )
        out[key] = value.astype(want.dtype)
    extra = sorted(set(flat) - set(target))
    if extra:
        raise ValueError(f"{source}: unexpected key {extra[0]!r} (another model? pass model=NAME)")
    return tree.unflatten(out)


def _fit_posemb(flat, target, old_grid, new_grid) -> np.ndarray:
    """The stored position embedding on the target's grid (class-token row kept, or dropped)."""
    pe, want = np.asarray(flat[POSEMB]), target[POSEMB].shape
    old_prefix, new_prefix = int("cls" in flat), int("cls" in target)
    if pe.shape == tuple(want) and old_prefix == new_prefix:
        return pe
    new_grid = new_grid or posemb.square_grid(want[1] - new_prefix)
    out = posemb.resample(pe, new_grid=new_grid, old_grid=old_grid, num_prefix_tokens=old_prefix)
    if old_prefix > new_prefix:  # Pooling without a class token now: its row has no use.
        out = out[:, old_prefix - new_prefix :]
    if out.shape[1] != want[1]:
        raise ValueError(f"position embedding: cannot go from {pe.shape} to {tuple(want)}")
    return out


def _from_flat(flat, source, model, meta) -> Weights:
    arch = infer.describe(flat)
    if model is None:
        model, overrides = infer.find_model(arch)
    else:
        overrides = infer.overrides_for(model, arch)
    overrides.update({k: meta[k] for k in _ARCH_KEYS if meta.get(k) is not None})
    return Weights(
        params=flat,
        model=model,
        overrides=overrides,
        source=str(source),
        image_size=meta.get("image_size") or _native_size(model, arch),
        class_names=tuple(meta["class_names"]) if meta.get("class_names") else None,
        grid=arch.grid,
    )


def _read_timm(path, model) -> Weights:
    from vit_jax import models

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


def _native_size(model: str, arch: infer.Arch) -> int | None:
    """Image size of the position embedding's grid (square grids), e.g. 14 × 16 = 224."""
    if arch.grid is None:
        return None
    return arch.grid[0] * stride(model, arch.classifier)


def stride(model: str, classifier: str = "token") -> int:
    """Pixels per token side of a model (patch × ResNet trunk), read from its shapes."""
    from vit_jax import models

    spec = models.spec(model)
    module = models.create(model, num_classes=None, classifier=classifier, posemb="learn")
    pe = tree.flatten(abstract_params(module, spec.image_size, spec.channels)).get(POSEMB)
    tokens = pe.shape[1] - (classifier == "token") if pe is not None else None
    if tokens is None:
        return spec.patch_size
    return spec.image_size // posemb.square_grid(tokens)[0]


def abstract_params(module, image_size: int, channels: int) -> dict:
    """The module's params as jax.ShapeDtypeStruct (unboxed), for one image size; no compute."""
    import flax.linen as nn
    import jax

    images = jax.ShapeDtypeStruct((1, image_size, image_size, channels), np.float32)
    shapes = jax.eval_shape(lambda x: module.init(jax.random.key(0), x), images)
    return nn.unbox(shapes["params"])


def _exists(path: str) -> bool:
    return paths.exists(path)


def _is_dir(path: str) -> bool:
    return paths.isdir(path)


def read_json(path) -> dict | None:
    """A small JSON file's contents, or None when absent or unreadable (logged)."""
    p = paths.path(path)
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError) as e:
        logging.warning("%s: unreadable (%s); ignored", p, e)
        return None
