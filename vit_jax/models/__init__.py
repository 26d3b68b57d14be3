"""The model zoo: ViT, BiT ResNet and hybrid models by name.

    module = models.create("B/16", num_classes=1000, dtype="bfloat16")
    variables = module.init(jax.random.key(0), images, train=False)
    logits = module.apply(variables, images, train=False)  # float32 [B, num_classes]

`train=True` needs `rngs={'dropout': key}`. `mutable=['attention']` sows the attention maps
(`attention/.../MultiHeadDotProductAttention_0/weights`, [B, heads, q, k] per block) and
`mutable=['intermediates']` the pooled pre-logit features (`intermediates/pre_logits/features`).
Names, hyperparameters and override checks live in `registry`; this module builds the modules.
"""

from __future__ import annotations

import jax.numpy as jnp
import ml_collections

from vit_jax.models import resnet, vit
from vit_jax.models.registry import OVERRIDE_KEYS, family, grid_side, names, resolve, spec

__all__ = ["OVERRIDE_KEYS", "build", "create", "family", "grid_side", "names", "resolve", "spec"]


def create(name: str, *, num_classes: int | None, **overrides):
    """The Flax module of `name`; see `resolve` for the overrides it accepts."""
    return build(resolve(name, overrides), num_classes=num_classes)


def build(c: ml_collections.ConfigDict, *, num_classes: int | None):
    """The Flax module of a (resolved) spec."""
    dtypes = dict(dtype=jnp.dtype(c.dtype), param_dtype=jnp.dtype(c.param_dtype))
    if c.family == "resnet":
        return resnet.ResNet(
            num_classes=num_classes,
            width=c.resnet.width,
            units=tuple(c.resnet.units),
            stem=c.resnet.stem,
            **dtypes,
        )
    trunk = {}
    if c.resnet is not None:
        trunk = dict(
            resnet_units=tuple(c.resnet.units),
            resnet_width=c.resnet.width,
            resnet_stem=c.resnet.stem,
        )
    return vit.VisionTransformer(
        num_classes=num_classes,
        patch_size=c.patch_size,
        hidden_size=c.hidden_size,
        num_layers=c.num_layers,
        mlp_dim=c.mlp_dim,
        num_heads=c.num_heads,
        classifier=c.classifier,
        representation_size=c.representation_size,
        posemb=c.posemb,
        dropout_rate=c.dropout_rate,
        attention_dropout_rate=c.attention_dropout_rate,
        stochastic_depth=c.stochastic_depth,
        gelu=c.gelu,
        scan=c.scan,
        remat_policy=c.remat_policy,
        attention_impl=c.attention_impl,
        **trunk,
        **dtypes,
    )
