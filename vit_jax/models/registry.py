"""Every named model as one `ModelSpec` (vit_jax/models/model_spec.py), generated from a few tables.

Canonical names:
  ViT                `{size}/{patch}`           e.g. "B/16" (sizes mu..G, patches 8/14/16/32);
                     `{size}/{patch}-gap`       gap pooling, as the reference "-gap-norep" models.
  ViT, 28×28         `{size}/{2,4,7}`           sizes mu, XXS, XS, Ti, S, M, B (Fashion-MNIST);
                     XXS (64 wide, 4 deep) and XS (128, 6) exist only here, for CPU budgets.
  Hybrid             `R{depth}[x{w}]+{size}/{stride}`  e.g. "R50+B/16", "R50x2+B/16", "R26+S/32";
                     the /N is the *total* stride (ResNet trunk × patch 1), as in the paper.
  Hybrid, 28×28      `R{depth}-w{base}+{size}/4`  small CNN trunk (stride 4) + ViT on 7×7 tokens;
                     `Cstem-w{base}+{size}/4`   two 3×3/2 convs (width base) as the whole trunk;
                     `Cstem-w{base}+{size}/8`   three (widths base, 2·base, 4·base): 28×28 → 4×4
                                                tokens, the Fashion-MNIST default's trunk.
  ResNet (BiT)       `R{26,50,101,152}x{1..4}`  alias `R50` = `R50x1`.
  ResNet, 28×28      `R{11,14,20,26}-w{8,16,32,64}`.
The reference vit_jax names (`ViT-B_16`, `R50+ViT-B_16`, ...) are aliases of canonical names.
`grid_side(spec, image_size)` is the number of tokens (cells) along a side for a given input.
"""

from __future__ import annotations

import jax.numpy as jnp

from vit_jax import errors
from vit_jax.models.model_spec import KNOBS, ModelSpec, ResNetSpec, check_override
from vit_jax.models.resnet import stem_downsampling

# size: (hidden_size, num_layers, mlp_dim, num_heads)
VIT_SIZES = {
    "mu": (32, 1, 128, 2),
    "Ti": (192, 12, 768, 3),
    "S": (384, 12, 1536, 6),
    "M": (512, 12, 2048, 8),
    "B": (768, 12, 3072, 12),
    "L": (1024, 24, 4096, 16),
    "H": (1280, 32, 5120, 16),
    "g": (1408, 40, 6144, 16),
    "G": (1664, 48, 8192, 16),
}
VIT_PATCHES = (8, 14, 16, 32)
# Narrow sizes between mu and Ti for 28×28 work on a CPU (the Fashion-MNIST default and study).
SMALL_ONLY_SIZES = {"XXS": (64, 4, 256, 4), "XS": (128, 6, 512, 4)}
SMALL_VIT_SIZES = ("mu", "XXS", "XS", "Ti", "S", "M", "B")
SMALL_VIT_PATCHES = (2, 4, 7)
# (name, units per stage, total stride with the BiT stem and patch 1)
HYBRID_TRUNKS = (("R50", (3, 4, 9), 16), ("R50", (3, 4, 6, 3), 32), ("R26", (2, 2, 2, 2), 32))
HYBRID_SIZES = ("Ti", "S", "B", "L")
HYBRID_WIDTHS = (1, 2)
BIT_UNITS = {26: (2, 2, 2, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
BIT_WIDTHS = (1, 2, 3, 4)
SMALL_UNITS = {11: (1, 1, 1), 14: (1, 1, 2), 20: (2, 2, 2), 26: (2, 3, 3)}  # depth = 3·Σ + 2
SMALL_CNN_WIDTHS = (8, 16, 32, 64)
SMALL_HYBRID_WIDTHS = (8, 16, 32)
SMALL_HYBRID_SIZES = ("mu", "XXS", "XS", "Ti", "S", "M")
CONV_STEM_WIDTHS = (16, 32, 64)

_SPECS: dict[str, ModelSpec] = {}
_ALIASES: dict[str, str] = {}
_SMALL = dict(image_size=28, channels=1, num_classes=10)  # The 28×28 Fashion-MNIST variants.


def _trunk_stride(resnet: ResNetSpec) -> int:
    """Downsampling of a ResNet trunk: the stem's (BiT 4, conv4 4, small 1) × 2 per later stage."""
    return stem_downsampling(resnet.stem) * 2 ** max(len(resnet.units) - 1, 0)


def _vit(name, size, patch, *, family="vit", resnet=None, dropout=0.0, small=False, gap=False):
    hidden_size, num_layers, mlp_dim, num_heads = (VIT_SIZES | SMALL_ONLY_SIZES)[size]
    return ModelSpec(
        name=name,
        family=family,
        size=size,
        hidden_size=hidden_size,
        num_layers=num_layers,
        mlp_dim=mlp_dim,
        num_heads=num_heads,
        patch_size=patch,
        total_stride=patch * (_trunk_stride(resnet) if resnet is not None else 1),
        resnet=resnet,
        classifier="gap" if gap else "token",
        posemb="learn",
        gelu="tanh",
        dropout_rate=dropout,
        **(_SMALL if small else {}),
    )


def _trunk(units, width, stem) -> ResNetSpec:
    return ResNetSpec(units=tuple(units), width=width, stem=stem)


def _resnet(name, trunk, *, small=False):
    return ModelSpec(
        name=name,
        family="resnet",
        resnet=trunk,
        total_stride=_trunk_stride(trunk),
        classifier="gap",
        **(_SMALL if small else {}),
    )


def _add(spec, *aliases):
    assert spec.name not in _SPECS and spec.name not in _ALIASES, spec.name
    _SPECS[spec.name] = spec
    for alias in aliases:
        _alias(alias, spec.name)


def _alias(alias, name):
    assert alias not in _SPECS and alias not in _ALIASES and name in _SPECS, alias
    _ALIASES[alias] = name


def _register_vits():
    for size in VIT_SIZES:
        for patch in VIT_PATCHES:
            # Dropout as the reference configs: 0.1 for L and H (not L/32), else 0.
            dropout = 0.1 if size in ("L", "H") and patch != 32 else 0.0
            _add(_vit(f"{size}/{patch}", size, patch, dropout=dropout))
    for size, patch in (("S", 16), ("B", 16), ("S", 32), ("B", 32)):
        _add(_vit(f"{size}/{patch}-gap", size, patch, gap=True), f"ViT-{size}_{patch}-gap-norep")
    for size in SMALL_VIT_SIZES:
        for patch in SMALL_VIT_PATCHES:
            _add(_vit(f"{size}/{patch}", size, patch, small=True))


def _register_hybrids():
    for trunk, units, stride in HYBRID_TRUNKS:
        for width in HYBRID_WIDTHS:
            prefix = trunk if width == 1 else f"{trunk}x{width}"
            for size in HYBRID_SIZES:
                name = f"{prefix}+{size}/{stride}"
                dropout = 0.1 if name == "R50+B/16" else 0.0  # As the reference R50+ViT-B_16.
                resnet = _trunk(units, 64 * width, "bit")
                _add(_vit(name, size, 1, family="hybrid", resnet=resnet, dropout=dropout))
    # The reference "R+ViT-Ti_16": ResNet stem only (stride 4) + 8×8 patches = total stride 32.
    _add(_vit("Rstem+Ti/32", "Ti", 8, family="hybrid", resnet=_trunk((), 64, "bit")))
    for depth, units in SMALL_UNITS.items():
        for base in SMALL_HYBRID_WIDTHS:
            for size in SMALL_HYBRID_SIZES:
                name = f"R{depth}-w{base}+{size}/4"
                resnet = _trunk(units, base, "small")
                _add(_vit(name, size, 1, family="hybrid", resnet=resnet, small=True))
    for base in CONV_STEM_WIDTHS:
        for size in SMALL_HYBRID_SIZES:
            stem = _trunk((), base, "conv4")
            _add(_vit(f"Cstem-w{base}+{size}/4", size, 1, family="hybrid", resnet=stem, small=True))
            stem = _trunk((), base, "conv8")
            _add(_vit(f"Cstem-w{base}+{size}/8", size, 1, family="hybrid", resnet=stem, small=True))


def _register_resnets():
    for depth, units in BIT_UNITS.items():
        for width in BIT_WIDTHS:
            c = _resnet(f"R{depth}x{width}", _trunk(units, 64 * width, "bit"))
            _add(c, f"R{depth}") if width == 1 else _add(c)
    for depth, units in SMALL_UNITS.items():
        for base in SMALL_CNN_WIDTHS:
            _add(_resnet(f"R{depth}-w{base}", _trunk(units, base, "small"), small=True))


def _register_reference_aliases():
    """The model names of google-research/vision_transformer's configs/models.py."""
    for size, patch in (("Ti", 16), ("S", 16), ("S", 32), ("B", 8), ("B", 16), ("B", 32)):
        _alias(f"ViT-{size}_{patch}", f"{size}/{patch}")
    for size, patch in (("L", 16), ("L", 32), ("H", 14), ("g", 14), ("G", 14)):
        _alias(f"ViT-{size}_{patch}", f"{size}/{patch}")
    for name in ("R50+B/16", "R26+B/32", "R26+S/32", "R50+L/32"):
        trunk, tower = name.split("+")
        _alias(f"{trunk}+ViT-{tower.replace('/', '_')}", name)
    _alias("R+ViT-Ti_16", "Rstem+Ti/32")


_register_vits()
_register_hybrids()
_register_resnets()
_register_reference_aliases()


def canonical(name: str) -> str:
    """The canonical name of `name` (itself or the name it aliases); ValueError if unknown."""
    if name in _SPECS:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    raise errors.UserError(f"unknown model name {name!r}; see vit_jax.models.names()")


def names() -> list[str]:
    """Every registered name: canonical names first (registration order), then aliases."""
    return list(_SPECS) + list(_ALIASES)


def canonical_names() -> list[str]:
    return list(_SPECS)


def spec(name: str) -> ModelSpec:
    """The hyperparameters of `name` (aliases resolve to their canonical spec); immutable."""
    return _SPECS[canonical(name)]


def grid_side(c: ModelSpec, image_size: int) -> int:
    """Tokens (ViT, hybrid) or final feature-map cells (ResNet) along a side of an image.

    A ResNet trunk pads ('SAME'), so each of its 2× downsamplings rounds up and any size works
    (28 → 14 → 7 → 4 for the stride-8 conv stem); patches must tile what reaches them exactly.
    ValueError, naming both numbers, when they do not.
    """
    side = image_size
    if c.resnet is not None:
        for _ in range(_trunk_stride(c.resnet).bit_length() - 1):
            side = -(-side // 2)
    patch = c.patch_size or 1
    if side % patch:
        where = f"its {side}×{side} feature map" if c.resnet is not None else "it"
        raise errors.UserError(
            f"image_size={image_size} is not divisible by the patch/stride {patch} of model "
            f"{c.name} ({patch}×{patch} patches do not tile {where})"
        )
    return side // patch


def family(name: str) -> str:
    """'vit', 'hybrid' or 'resnet'."""
    return _SPECS[canonical(name)].family


def resolve(name: str, overrides: dict) -> ModelSpec:
    """`spec(name)` with `overrides` (ModelSpec knobs) applied; None keeps the registry's value.

    Raises ValueError naming the key for an unknown key, a bad value, or a setting the model's
    family does not have (e.g. posemb='sincos2d' for a plain ResNet).
    """
    c = spec(name)
    changes = {}
    for key, value in overrides.items():
        if key == "representation_size" and value == -1:  # A pre_logits as wide as the model.
            value = c.hidden_size
        if value is None and key in KNOBS:
            continue
        if key in ("dtype", "param_dtype"):
            value = _dtype_name(key, value)
        if check_override(c, key, value):
            changes[key] = value
    return c.replace(**changes)


def _dtype_name(key, value) -> str:
    try:
        return jnp.dtype(value).name
    except TypeError:
        raise errors.UserError(f"model override {key}={value!r}: not a dtype") from None
