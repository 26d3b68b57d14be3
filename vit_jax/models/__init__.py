"""The model zoo: ViT, BiT ResNet and hybrid models by name.

    module = models.create("B/16", num_classes=1000, dtype="bfloat16")
    variables = module.init(jax.random.key(0), images, train=False)
    logits = module.apply(variables, images, train=False)  # float32 [B, num_classes]

`train=True` needs `rngs={'dropout': key}`. `mutable=['attention']` sows the attention maps and
`mutable=['intermediates']` the pooled pre-logit features. See `registry` for the naming scheme.
"""

from vit_jax.models.registry import create, family, names, spec

__all__ = ["create", "family", "names", "spec"]
