"""The model zoo: ViT, BiT ResNet and hybrid models by name.

    module = models.create("B/16", num_classes=1000, dtype="bfloat16")
    variables = module.init(jax.random.key(0), images, train=False)
    logits = module.apply(variables, images, train=False)  # float32 [B, num_classes]

`train=True` needs `rngs={'dropout': key}`. `mutable=['attention']` sows the attention maps
(`attention/.../MultiHeadDotProductAttention_0/weights`, [B, heads, q, k] per block) and
`mutable=['intermediates']` the pooled pre-logit features (`intermediates/pre_logits/features`).
Hyperparameters are one frozen `ModelSpec` (model_spec.py) per name (registry.py); this module
builds the Flax modules from specs.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from vit_jax.models import resnet, vit
from vit_jax.models.model_spec import KNOBS, ModelSpec, ResNetSpec
from vit_jax.models.registry import family, grid_side, names, resolve, spec

# Overrides `create` accepts: the knobs of ModelSpec (also the keys of a run's config.model).
OVERRIDE_KEYS = tuple(KNOBS)

__all__ = [
    "OVERRIDE_KEYS",
    "ModelSpec",
    "ResNetSpec",
    "build",
    "create",
    "family",
    "grid_side",
    "names",
    "resolve",
    "spec",
]


def create(name: str, *, num_classes: int | None, **overrides):
    """The Flax module of `name`; see `resolve` for the overrides it accepts."""
    return build(resolve(name, overrides), num_classes=num_classes)


def build(c: ModelSpec, *, num_classes: int | None):
    """The Flax module of a (resolved) spec.

    The modules' fields carry the spec's names, so the spec's values pass through by name: a new
    ModelSpec knob reaches the module by being declared there too, not by another list here.
    """
    dtypes = dict(dtype=jnp.dtype(c.dtype), param_dtype=jnp.dtype(c.param_dtype))
    if c.family == "resnet":
        trunk = dataclasses.asdict(c.resnet)
        return resnet.ResNet(num_classes=num_classes, **trunk, **dtypes)
    trunk = {}
    if c.resnet is not None:
        trunk = {f"resnet_{k}": v for k, v in dataclasses.asdict(c.resnet).items()}
    return vit.VisionTransformer(
        num_classes=num_classes, **_fields_of(vit.VisionTransformer, c), **trunk, **dtypes
    )


def _fields_of(module_cls, c: ModelSpec) -> dict:
    """The spec's values of the hyperparameters `module_cls` declares (its dataclass fields)."""
    wanted = {f.name for f in dataclasses.fields(module_cls)} - _NOT_PASSED
    return {f.name: getattr(c, f.name) for f in dataclasses.fields(c) if f.name in wanted}


# Spec fields that are no module hyperparameter: a Flax module's own `name`, the native class count
# (`build` takes the run's), the trunk (passed as resnet_*) and the dtypes (passed as jnp dtypes).
_NOT_PASSED = {"name", "num_classes", "resnet", "dtype", "param_dtype"}
