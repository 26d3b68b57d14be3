"""What the attention heads look at: mean attention distance (Fig. 7 right) and rollout (Fig. 6).

Both take the maps `Classifier.attention_maps` returns, [layers, B, heads, tokens, tokens], whose
rows are softmax distributions over keys. Leading tokens that are not grid positions (the class
token) are `num_prefix_tokens`; the rest form a square grid of patches in row-major order.
"""

from __future__ import annotations

import numpy as np

from vit_jax import errors, posemb

ROW_SUM_TOLERANCE = 1e-3  # float32 softmax rows sum to 1 within ~1e-6; this flags wrong axes.


def grid_distances(side: int, *, stride: float) -> np.ndarray:
    """[N, N] Euclidean distance in pixels between patch centres of a side×side grid.

    Patch centres sit `stride` pixels apart (patch size for ViT, ResNet stride × patch for a
    hybrid), so the distance is the index distance times the stride.
    """
    rows, cols = np.divmod(np.arange(side * side), side)
    dy = rows[:, None] - rows[None, :]
    dx = cols[:, None] - cols[None, :]
    return np.hypot(dy, dx) * float(stride)


def mean_attention_distance(maps, *, stride: float, num_prefix_tokens: int) -> np.ndarray:
    """[layers, heads] pixels: Σ_k attention(q→k)·distance(q, k), averaged over images and q.

    Paper Fig. 7 right: the analogue of a CNN's receptive field size. Only patch tokens count:
    attention to the prefix (class token) is dropped and each query's patch weights renormalised,
    so a head attending uniformly scores the grid's mean pairwise distance, one attending only to
    itself scores 0.
    """
    maps = _checked(maps)
    patches = maps[..., num_prefix_tokens:, num_prefix_tokens:]
    patches = patches / patches.sum(-1, keepdims=True)
    side = posemb.square_grid(patches.shape[-1])[0]
    per_query = (patches * grid_distances(side, stride=stride)).sum(-1)  # [L, B, H, N]
    return per_query.mean(axis=(1, 3))


def rollout(maps, *, residual: float = 0.5) -> np.ndarray:
    """[B, T, T] attention rollout (Abnar & Zuidema 2020): how much each token draws on each input.

    Per layer the heads are averaged and the residual path added, A = (1-r)·mean_h(attn) + r·I;
    rows of A sum to 1, so rows of the product A_L ⋯ A_1 do too (the total draw of a token).
    """
    maps = _checked(maps).mean(axis=2)  # Heads averaged: [layers, B, T, T].
    eye = np.eye(maps.shape[-1])
    joint = np.broadcast_to(eye, maps.shape[1:]).copy()
    for layer in maps:
        joint = ((1.0 - residual) * layer + residual * eye) @ joint
    return joint


def token_map(joint: np.ndarray, *, num_prefix_tokens: int) -> np.ndarray:
    """[B, side, side] map of a rollout, scaled to max 1: the class token's row when there is
    one (what the prediction draws on), else the mean row (what every token draws on)."""
    row = joint[:, 0] if num_prefix_tokens else joint.mean(axis=1)
    row = row[:, num_prefix_tokens:]
    side = posemb.square_grid(row.shape[-1])[0]
    return (row / row.max(-1, keepdims=True)).reshape(-1, side, side)


def _checked(maps) -> np.ndarray:
    maps = np.asarray(maps, np.float64)
    if maps.ndim != 5 or maps.shape[-1] != maps.shape[-2]:
        raise errors.UserError(f"attention maps must be [layers, B, heads, T, T], got {maps.shape}")
    error = np.abs(maps.sum(-1) - 1.0).max(initial=0.0)
    if error > ROW_SUM_TOLERANCE:
        raise errors.UserError(f"attention rows must sum to 1 over keys (off by up to {error:.3g})")
    return maps
