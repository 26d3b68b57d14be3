"""Stateless augmentation, vectorised over a batch: pixels are a pure function of (seed, counters).

Every random number comes from TF's stateless ops keyed by `key(seed, domain, process, counter)`,
never from TF's global seed or op-level seeds, so a (seed, process, step) triple names exactly one
batch: identical reruns, and resuming at any step without replaying the ones before.
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from vit_jax import errors

INCEPTION_AREA = (0.05, 1.0)  # Fraction of the image area kept (reference vit_jax / big_vision).
INCEPTION_ASPECT = (3 / 4, 4 / 3)  # Width / height, TF's sample_distorted_bounding_box default.
_INCEPTION_ATTEMPTS = 10  # Candidate boxes per image; none fits -> the whole image.


@dataclasses.dataclass(frozen=True)
class Augment:
    """The training augmentation of a data config (config.data.augment & co.)."""

    kind: str  # inception_crop | pad_crop | resize
    size: int
    padding: int = 0
    flip: bool = False

    @classmethod
    def from_config(cls, data_config) -> Augment:
        return cls(
            kind=data_config.augment,
            size=data_config.image_size,
            padding=data_config.crop_padding,
            flip=data_config.flip,
        )


def key(seed: int, *counters) -> tf.Tensor:
    """A stateless-RNG seed (shape [2]) from `seed` and integer counters (ints or scalars)."""
    k = tf.constant([seed % 2**31, (seed // 2**31) % 2**31], tf.int64)
    for counter in counters:
        k = tf.random.experimental.stateless_fold_in(k, tf.cast(counter, tf.int64))
    return k


def permutation(n, k) -> tf.Tensor:
    """A uniformly random permutation of range(n), int64, fixed by key `k`."""
    return tf.random.experimental.stateless_shuffle(tf.range(n, dtype=tf.int64), seed=k)


def normalize(images) -> tf.Tensor:
    """Pixels [0, 255] -> float32 [-1, 1], as the reference ViT pipeline."""
    return tf.cast(images, tf.float32) / 127.5 - 1.0


def resize(images, size: int) -> tf.Tensor:
    """Bilinear resize of an image or a batch to size x size (float32); exact when already so."""
    if images.shape[-3:-1] == (size, size):
        return tf.cast(images, tf.float32)
    return tf.image.resize(images, [size, size], method="bilinear")


def eval_batch(images, size: int) -> tf.Tensor:
    return normalize(resize(images, size))


def train_batch(images, k, aug: Augment) -> tf.Tensor:
    """Augments a batch [B, H, W, C] (H, W static) to float32 [B, S, S, C] in [-1, 1]."""
    k_crop, k_flip = tf.unstack(tf.random.experimental.stateless_split(k, 2))
    if aug.kind == "inception_crop":
        images = inception_crop(images, k_crop, aug.size)
    elif aug.kind == "pad_crop":
        images = pad_crop(resize(images, aug.size), k_crop, aug.padding)
    elif aug.kind == "resize":
        images = resize(images, aug.size)
    else:
        raise errors.UserError(f"config.data.augment={aug.kind!r}: unknown augmentation")
    if aug.flip:
        images = random_flip(images, k_flip)
    return normalize(images)


def example_to_size(image, k, aug: Augment) -> tf.Tensor:
    """One image of any size -> float32 [S, S, C], for batches of mixed-size images.

    inception_crop is done here, with TF's own box sampler (the reference's op, keyed
    statelessly); the rest resize. `batch_augment(aug)` is what is left for the batch.
    """
    if aug.kind != "inception_crop":
        return resize(image, aug.size)
    begin, box_size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        tf.zeros([0, 0, 4], tf.float32),
        seed=k,
        min_object_covered=0.0,
        aspect_ratio_range=INCEPTION_ASPECT,
        area_range=INCEPTION_AREA,
        max_attempts=_INCEPTION_ATTEMPTS,
        use_image_if_no_bounding_boxes=True,
    )
    crop = tf.slice(image, begin, box_size)
    return tf.image.resize(crop, [aug.size, aug.size], method="bilinear")


def batch_augment(aug: Augment) -> Augment:
    """The batch-level remainder of `aug` after `example_to_size`."""
    return dataclasses.replace(aug, kind="resize") if aug.kind == "inception_crop" else aug


def inception_crop(images, k, size: int) -> tf.Tensor:
    """Random-area crops (area and aspect ranges of the reference), resized to size x size.

    Vectorised: box sizes are drawn per image, first of a few candidates that fits (else the whole
    image), then one crop_and_resize for the batch. Bilinear with aligned corners, so every sample
    lies inside the crop.
    """
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    k_area, k_aspect, k_pos = tf.unstack(tf.random.experimental.stateless_split(k, 3))
    shape = [batch, _INCEPTION_ATTEMPTS]
    area = tf.random.stateless_uniform(shape, k_area, *INCEPTION_AREA) * (height * width)
    aspect = tf.random.stateless_uniform(shape, k_aspect, *INCEPTION_ASPECT)
    crop_h = tf.round(tf.sqrt(area / aspect))
    crop_w = tf.round(tf.sqrt(area * aspect))
    fits = (crop_h >= 1) & (crop_h <= height) & (crop_w >= 1) & (crop_w <= width)
    first = tf.argmax(tf.cast(fits, tf.int32), axis=1)
    any_fits = tf.reduce_any(fits, axis=1)
    crop_h = tf.where(any_fits, tf.gather(crop_h, first, batch_dims=1), float(height))
    crop_w = tf.where(any_fits, tf.gather(crop_w, first, batch_dims=1), float(width))
    pos = tf.random.stateless_uniform([batch, 2], k_pos)
    top = tf.floor(pos[:, 0] * (height - crop_h + 1))
    left = tf.floor(pos[:, 1] * (width - crop_w + 1))
    dy, dx = max(height - 1, 1), max(width - 1, 1)
    boxes = tf.stack(
        [top / dy, left / dx, (top + crop_h - 1) / dy, (left + crop_w - 1) / dx], axis=1
    )
    box_indices = tf.range(batch, dtype=tf.int32)
    return tf.image.crop_and_resize(images, boxes, box_indices, [size, size], method="bilinear")


def pad_crop(images, k, padding: int) -> tf.Tensor:
    """Zero-pads by `padding` then takes a random crop of the original size (the CIFAR recipe).

    Zero (black) padding rather than edge: what the recipe does, and Fashion-MNIST's background.
    """
    if padding <= 0:
        return images
    batch, height, width = tf.shape(images)[0], images.shape[1], images.shape[2]
    padded = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    offsets = tf.random.stateless_uniform(
        [batch, 2], k, minval=0, maxval=2 * padding + 1, dtype=tf.int32
    )
    rows = offsets[:, :1] + tf.range(height)[None]
    cols = offsets[:, 1:] + tf.range(width)[None]
    padded = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(padded, cols, axis=2, batch_dims=1)


def random_flip(images, k) -> tf.Tensor:
    """Mirrors each image left-right with probability 1/2."""
    flip = tf.random.stateless_uniform([tf.shape(images)[0]], k) < 0.5
    return tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
