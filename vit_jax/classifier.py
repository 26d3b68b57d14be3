"""`vit_jax.load(path) -> Classifier`: a trained model as a function from images to numpy logits.

The Classifier owns a Flax module, its params on the default device and jitted forward passes.
Inputs are float32 NHWC images in [-1, 1] at any size the model's patches divide (the position
embedding is resampled at load time to `image_size`); `preprocess` makes them from uint8 pixels
the way the training pipeline's eval split does (bilinear resize, x / 127.5 - 1).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax import errors, interop, models


def load(
    path: str,
    *,
    model: str | None = None,
    num_classes: int | None = None,
    image_size: int | None = None,
) -> Classifier:
    """A Classifier from a workdir / Orbax checkpoint, an .npz, a timm .safetensors file or an HF
    ViT folder (config.json + model.safetensors, as `transformers` saves them).

    Args:
      path: training workdir (or its checkpoints/ or a step folder), .npz, .safetensors or HF
        folder.
      model: registry name, when the file cannot say (e.g. a published .npz with unusual shapes).
      num_classes: checked against the stored head; 0 drops the head (features as output).
      image_size: input resolution; the position embedding is resampled to it. Default: the
        checkpoint's own.
    """
    weights = interop.read(path, model=model)
    stored = weights.num_classes
    if num_classes not in (None, 0) and num_classes != stored:
        raise errors.UserError(f"{path}: head has {stored} classes, not num_classes={num_classes}")
    num_classes = stored if num_classes is None else num_classes
    return Classifier(weights, num_classes=num_classes, image_size=image_size)


class Classifier:
    """Images → logits, features and attention maps of one model (see `load`)."""

    def __init__(self, weights, *, num_classes: int | None = None, image_size: int | None = None):
        self.model_name = weights.model
        self.spec = models.resolve(weights.model, weights.overrides)
        self.num_classes = weights.num_classes if num_classes is None else num_classes
        self.image_size = int(image_size or weights.image_size or self.spec.image_size)
        self.channels = _channels(weights.params)
        names = weights.class_names
        self.class_names = tuple(names) if names and len(names) == self.num_classes else None
        self.module = models.create(
            weights.model, num_classes=self.num_classes or None, **weights.overrides
        )
        abstract = interop.abstract_params(self.module, self.image_size, self.channels)
        grid = models.registry.grid_side(self.spec, self.image_size)  # Tokens along a side.
        params = interop.fit(  # Features only (no head): fit drops the stored one.
            weights.params,
            abstract,
            source=weights.source,
            old_grid=weights.grid,
            new_grid=(grid, grid),
        )
        self.params = jax.device_put(params)

    def __call__(self, images) -> np.ndarray:
        """Logits [B, num_classes] (float32) of images in [-1, 1]; pre-logits if no head."""
        return np.asarray(self._logits(self.params, self._check(images)))

    def predict(self, images, *, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Per image, the top-k (class name or index, softmax probability) pairs."""
        logits = self(images)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        out = []
        for row in probs:
            best = np.argsort(-row)[:top_k]
            out.append([(self.label(int(i)), float(row[i])) for i in best])
        return out

    def label(self, index: int) -> str:
        return self.class_names[index] if self.class_names else str(index)

    def features(self, images) -> np.ndarray:
        """Pooled pre-logit features [B, D] (the representation layer's output, if any)."""
        return np.asarray(self._features(self.params, self._check(images)))

    def attention_maps(self, images) -> np.ndarray:
        """Attention weights of every encoder layer: [layers, B, heads, tokens, tokens]."""
        if self.spec.family == "resnet":
            raise errors.UserError(f"{self.model_name} is a ResNet: it has no attention maps")
        return np.asarray(self._attention(self.params, self._check(images)))

    def preprocess(self, images) -> np.ndarray:
        """uint8 [B, H, W, C] (or one [H, W, C] image) → float32 [B, S, S, C] in [-1, 1].

        Bilinear resize without antialiasing (as the eval pipeline, tf.image.resize); grayscale
        and RGB are converted to the model's channel count.
        """
        x = np.asarray(images)
        x = x[None] if x.ndim == 3 else x
        if x.ndim != 4:
            raise errors.UserError(
                f"expected images [B, H, W, C] or [H, W, C], got shape {x.shape}"
            )
        x = x.astype(np.float32)
        if x.shape[-1] != self.channels:
            x = x.mean(-1, keepdims=True) if self.channels == 1 else np.repeat(x[..., :1], 3, -1)
        size = (x.shape[0], self.image_size, self.image_size, self.channels)
        if x.shape != size:
            x = np.asarray(jax.image.resize(x, size, "bilinear", antialias=False))
        return x / 127.5 - 1.0

    def _check(self, images) -> np.ndarray:
        x = np.asarray(images, np.float32)
        if x.ndim != 4 or x.shape[-1] != self.channels:
            raise errors.UserError(
                f"expected float32 images [B, H, W, {self.channels}] in [-1, 1], got {x.shape}"
            )
        return x

    @functools.cached_property
    def _logits(self):
        return jax.jit(lambda p, x: self.module.apply({"params": p}, x))

    @functools.cached_property
    def _features(self):
        def run(p, x):
            _, state = self.module.apply({"params": p}, x, mutable=["intermediates"])
            return state["intermediates"]["pre_logits"]["features"][0]

        return jax.jit(run)

    @functools.cached_property
    def _attention(self):
        def run(p, x):
            _, state = self.module.apply({"params": p}, x, mutable=["attention"])
            return _encoder_maps(state["attention"])

        return jax.jit(run)

    def __repr__(self) -> str:
        return (
            f"Classifier({self.model_name!r}, num_classes={self.num_classes}, "
            f"image_size={self.image_size})"
        )


def _encoder_maps(attention):
    """Sown encoder attention weights → [layers, B, heads, q, k] (scanned or unrolled blocks)."""
    blocks = attention["Transformer"]
    if "encoderblock" in blocks:  # Scanned: one entry with a leading layer axis.
        return blocks["encoderblock"]["MultiHeadDotProductAttention_0"]["weights"][0]
    layers = sorted(blocks, key=lambda k: int(k.rsplit("_", 1)[1]))
    return jnp.stack([blocks[k]["MultiHeadDotProductAttention_0"]["weights"][0] for k in layers])


def attention_rollout(maps: np.ndarray, *, num_prefix_tokens: int = 1) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020; ViT paper Fig. 6): [layers, B, H, T, T] →
    [B, h, w] map of how much the class token (without one: every token, on average) draws from
    each patch through all layers, scaled to max 1. See `vit_jax.inspect.attention`."""
    from vit_jax.inspect import attention

    joint = attention.rollout(maps)
    return attention.token_map(joint, num_prefix_tokens=num_prefix_tokens)


def _channels(params) -> int:
    kernel = (
        params["conv_root/kernel"] if "conv_root/kernel" in params else params["embedding/kernel"]
    )
    return int(kernel.shape[2])
