"""vit_jax: Vision Transformers in JAX/Flax — train, scale, fine-tune, load.

    import vit_jax
    clf = vit_jax.load("runs/fashion_mnist")            # workdir, Orbax dir, .npz, .safetensors
    logits = clf(clf.preprocess(uint8_images))          # numpy [B, classes]
    clf.predict(images), clf.features(images), clf.attention_maps(images)

`import vit_jax` is cheap: nothing below is imported (no JAX, no TensorFlow, no device work) until
one of these names is used. Training: `python -m vit_jax.main --config=... --workdir=...`.
Conversion: `python -m vit_jax.convert SRC OUT --to orbax|npz|timm`.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "load": "vit_jax.classifier",
    "Classifier": "vit_jax.classifier",
    "attention_rollout": "vit_jax.classifier",
    "create_model": "vit_jax.models",
    "model_names": "vit_jax.models",
}
_RENAMED = {"create_model": "create", "model_names": "names"}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'vit_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), _RENAMED.get(name, name))
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
