"""Translation probe: how much a model's predictions move when the image moves by a few pixels.

A CNN's convolutions and pooling make it close to translation invariant by construction; a ViT
has to learn it (its patch grid is only invariant to shifts by whole patches, and only without
position embeddings). The probe shifts each test image by 1…k pixels in each of the four
directions, filling the uncovered border with `fill`, and reports top-1 accuracy and agreement
with the unshifted predictions, averaged over the directions. Works for any `images → logits`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vit_jax import errors

DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (dy, dx): right, left, down, up.


def shift(images, *, dy: int, dx: int, fill: float) -> np.ndarray:
    """[B, H, W, C] images moved dy pixels down and dx right; the uncovered border is `fill`."""
    images = np.asarray(images)
    h, w = images.shape[1:3]
    if abs(dy) >= h or abs(dx) >= w:
        raise errors.UserError(f"shift ({dy}, {dx}) is not smaller than the image ({h}×{w})")
    out = np.full_like(images, fill)
    out[:, max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = images[
        :, max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def probe(
    predict: Callable[[np.ndarray], np.ndarray],
    images,
    labels,
    *,
    max_shift: int,
    fill: float = -1.0,
    batch_size: int = 256,
) -> dict:
    """{'shift': [0..k], 'accuracy': [...], 'agreement': [...]} of `predict` (images → logits).

    `fill` is in the model's input range: -1 is black in [-1, 1] images (Fashion-MNIST's
    background). Shift 0 is the unshifted accuracy, with agreement 1 by definition.
    """
    labels = np.asarray(labels)
    if max_shift < 0:
        raise errors.UserError(f"max_shift={max_shift} must be >= 0")
    base = _argmax(predict, np.asarray(images, np.float32), batch_size)
    out = {"shift": [0], "accuracy": [float(np.mean(base == labels))], "agreement": [1.0]}
    for k in range(1, max_shift + 1):
        accuracy, agreement = [], []
        for dy, dx in DIRECTIONS:
            moved = shift(images, dy=k * dy, dx=k * dx, fill=fill)
            pred = _argmax(predict, moved, batch_size)
            accuracy.append(np.mean(pred == labels))
            agreement.append(np.mean(pred == base))
        out["shift"].append(k)
        out["accuracy"].append(float(np.mean(accuracy)))
        out["agreement"].append(float(np.mean(agreement)))
    return out


def _argmax(predict, images, batch_size) -> np.ndarray:
    chunks = [predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    return np.concatenate([np.asarray(c).argmax(-1) for c in chunks])
