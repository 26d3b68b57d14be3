"""Which registered model a bare weight file (npz, safetensors) belongs to, read from its shapes.

Published .npz files carry no config. Their shapes pin the architecture (width, depth, MLP width,
heads, patch, ResNet trunk) and the head options (class token, representation layer, learned or
fixed position embedding); the registry then names it. A `model=` given by the caller wins.
"""

from __future__ import annotations

import dataclasses
import re

from vit_jax import errors, models, posemb
from vit_jax.interop import fitter, tree


@dataclasses.dataclass(frozen=True)
class Arch:
    """What the weights say about the model (None: the weights cannot tell)."""

    hidden_size: int
    num_layers: int
    mlp_dim: int
    num_heads: int | None
    patch_size: int
    channels: int
    classifier: str
    representation_size: int | None
    posemb: str
    num_classes: int | None
    resnet_units: tuple[int, ...] | None = None
    resnet_width: int | None = None
    grid: tuple[int, int] | None = None  # Patch grid of the learned position embedding.


def describe(flat) -> Arch:
    """The architecture of canonical weights; ValueError naming the key when one is missing."""
    kernel = _get(flat, "embedding/kernel")  # (p, p, C, D)
    mlp = _get(flat, "Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel")
    query = flat.get("Transformer/encoderblock_0/MultiHeadDotProductAttention_0/query/kernel")
    classifier = "map" if any(k.startswith("MAPHead_0/") for k in flat) else "gap"
    classifier = "token" if "cls" in flat else classifier
    pe = flat.get("Transformer/posembed_input/pos_embedding")
    grid = None
    if pe is not None:
        rows = pe.shape[1] - (classifier == "token")
        side = int(round(rows**0.5))
        grid = (side, side) if side * side == rows else None
    units, width = _resnet(flat)
    head = flat.get("head/kernel")
    return Arch(
        hidden_size=int(kernel.shape[-1]),
        num_layers=tree.num_blocks(flat),
        mlp_dim=int(mlp.shape[-1]),
        num_heads=int(query.shape[1]) if query is not None and query.ndim == 3 else None,
        patch_size=int(kernel.shape[0]),
        channels=int(flat["conv_root/kernel"].shape[2]) if units is not None else kernel.shape[2],
        classifier=classifier,
        representation_size=int(flat["pre_logits/kernel"].shape[-1])
        if "pre_logits/kernel" in flat
        else None,
        posemb="learn" if pe is not None else "sincos2d",
        num_classes=int(head.shape[-1]) if head is not None else None,
        resnet_units=units,
        resnet_width=width,
        grid=grid,
    )


def find_model(arch: Arch) -> tuple[str, dict]:
    """(registry name, overrides) of the model with `arch`; ValueError when none matches."""
    candidates = []
    for name in models.registry.canonical_names():
        s = models.spec(name)
        if s.family == "resnet" or not _same_trunk(s, arch):
            continue
        candidates.append((s.classifier != arch.classifier, name))  # Same pooling first.
    if not candidates:
        raise errors.UserError(
            f"no registered model has width {arch.hidden_size}, depth {arch.num_layers}, MLP "
            f"{arch.mlp_dim}, patch {arch.patch_size} (resnet {arch.resnet_units}); pass model=NAME"
        )
    name = min(candidates)[1]
    return name, overrides_for(name, arch)


def overrides_for(name: str, arch: Arch) -> dict:
    """The model overrides that turn registry `name` into `arch` (pooling, pre-logits, posemb)."""
    s = models.spec(name)
    wanted = dict(
        classifier=arch.classifier,
        representation_size=arch.representation_size,
        posemb=arch.posemb,
    )
    out = {k: v for k, v in wanted.items() if getattr(s, k) != v and v is not None}
    if arch.representation_size is None and s.representation_size is not None:
        raise errors.UserError(
            f"model {name!r} has a representation layer; these weights have none"
        )
    return out


def _same_trunk(s, arch: Arch) -> bool:
    if (s.hidden_size, s.num_layers, s.mlp_dim) != (
        arch.hidden_size,
        arch.num_layers,
        arch.mlp_dim,
    ):
        return False
    if arch.num_heads is not None and s.num_heads != arch.num_heads:
        return False
    if s.patch_size != arch.patch_size:
        return False
    if arch.resnet_units is None:
        return s.resnet is None
    return (
        s.resnet is not None
        and tuple(s.resnet.units) == arch.resnet_units
        and s.resnet.width == arch.resnet_width
    )


def _resnet(flat) -> tuple[tuple[int, ...] | None, int | None]:
    if "conv_root/kernel" not in flat:
        return None, None
    counts: dict[int, set] = {}
    for key in flat:
        m = re.match(r"^block(\d+)/unit(\d+)/", key)
        if m:
            counts.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    units = tuple(len(counts[b]) for b in sorted(counts))
    return units, int(flat["conv_root/kernel"].shape[-1])


def _get(flat, key):
    if key not in flat:
        raise errors.UserError(f"missing key {key!r}: not a ViT checkpoint this code can read")
    return flat[key]


def native_size(model: str, arch: Arch) -> int | None:
    """Image size of the position embedding's grid (square grids), e.g. 14 × 16 = 224."""
    if arch.grid is None:
        return None
    return arch.grid[0] * stride(model, arch.classifier)


def stride(model: str, classifier: str = "token") -> int:
    """Pixels per token side of a model (patch × ResNet trunk), read from its shapes."""
    spec = models.spec(model)
    module = models.create(model, num_classes=None, classifier=classifier, posemb="learn")
    abstract = fitter.abstract_params(module, spec.image_size, spec.channels)
    pe = tree.flatten(abstract).get(fitter.POSEMB)
    tokens = pe.shape[1] - (classifier == "token") if pe is not None else None
    if tokens is None:
        return spec.patch_size
    return spec.image_size // posemb.square_grid(tokens)[0]
