"""What the embeddings learn: position-embedding similarity (Fig. 7 centre) and the principal
components of the patch-embedding filters (Fig. 7 left)."""

from __future__ import annotations

import numpy as np

from vit_jax import errors, posemb


def cosine_grid(table, *, grid: tuple[int, int] | None = None) -> np.ndarray:
    """[h, w, h, w]: cosine similarity of each grid position's embedding with every other.

    `table` is [h·w, D] (or [1, h·w, D]) without prefix rows; entry [i, j] is the small h×w map of
    position (i, j) in the figure's grid of grids.
    """
    table = np.asarray(table, np.float64)
    table = table[0] if table.ndim == 3 else table
    h, w = grid or posemb.square_grid(len(table))
    if h * w != len(table):
        raise errors.UserError(f"{len(table)} position embeddings do not form a {h}×{w} grid")
    unit = table / np.linalg.norm(table, axis=-1, keepdims=True)
    return (unit @ unit.T).reshape(h, w, h, w)


def similarity_by_distance(similarity: np.ndarray) -> list[list[float]]:
    """[[distance in patches, mean cosine], ...] over position pairs, distances rounded to 0.5:
    how fast similarity decays with distance (one number per distance for the JSON)."""
    h, w = similarity.shape[:2]
    rows, cols = np.divmod(np.arange(h * w), w)
    dist = np.hypot(rows[:, None] - rows[None], cols[:, None] - cols[None])
    dist = np.round(dist * 2) / 2
    flat = similarity.reshape(h * w, h * w)
    return [[float(d), float(flat[dist == d].mean())] for d in np.unique(dist)]


def filter_components(kernel, *, count: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` principal components of a conv's filters, as images, and the fraction of
    the filters' variance each explains.

    `kernel` is [kh, kw, C, D] (HWIO): D filters of kh·kw·C pixels, centred over the D filters;
    components come back as [count, kh, kw, C] with unit norm (their sign is arbitrary).
    """
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 4:
        raise errors.UserError(f"conv kernel must be [kh, kw, C, D], got shape {kernel.shape}")
    kh, kw, c, d = kernel.shape
    filters = kernel.reshape(kh * kw * c, d).T  # [D filters, pixels]
    centred = filters - filters.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    variance = singular**2
    explained = variance / variance.sum() if variance.sum() > 0 else variance
    count = min(count, len(components))
    return components[:count].reshape(count, kh, kw, c), explained[:count]
