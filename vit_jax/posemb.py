"""Resampling learned position embeddings to a new patch grid (fine-tuning at another resolution).

Paper §3.2: the pre-trained embeddings are interpolated in 2D, by their position in the image. The
reference (vit_jax `load_pretrained`) keeps the class-token row as is and resizes the square grid
with `scipy.ndimage.zoom(order=1)`: bilinear with corners aligned (output pixel i samples input
i·(n_in−1)/(n_out−1)). `resample` does exactly that, in NumPy, and also for non-square grids and
for models with no (or several) prefix tokens.
"""

from __future__ import annotations

import math

import numpy as np

from vit_jax import errors


def resample(
    posemb: np.ndarray,
    *,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
) -> np.ndarray:
    """[1, P + h·w, D] → [1, P + h'·w', D]: prefix rows (class token) kept, the grid resized.

    Args:
      posemb: embeddings with a leading batch axis of 1 (the reference layout) or without it.
      new_grid: (h', w') patches of the new resolution.
      old_grid: (h, w) of `posemb`; None reads a square grid from its length.
      num_prefix_tokens: leading rows that are not grid positions (1 for a class token, else 0).
    """
    posemb = np.asarray(posemb)
    batched = posemb.ndim == 3
    table = posemb[0] if batched else posemb
    prefix, grid = table[:num_prefix_tokens], table[num_prefix_tokens:]
    old_grid = tuple(old_grid) if old_grid is not None else square_grid(len(grid))
    if old_grid[0] * old_grid[1] != len(grid):
        raise errors.UserError(
            f"position embedding has {len(grid)} grid rows, not a {old_grid} grid"
        )
    new_grid = tuple(int(n) for n in new_grid)
    grid = grid.reshape(*old_grid, -1)
    if old_grid != new_grid:
        grid = _linear(_linear(grid.astype(np.float64), new_grid[0], axis=0), new_grid[1], axis=1)
    out = np.concatenate([prefix, grid.reshape(-1, table.shape[-1]).astype(table.dtype)], axis=0)
    return out[None] if batched else out


def square_grid(n: int) -> tuple[int, int]:
    """(s, s) with s·s = n; a ValueError when n is not a square (pass the grid explicitly)."""
    side = math.isqrt(n)
    if side * side != n:
        raise errors.UserError(
            f"{n} position embeddings do not form a square grid; give the grid shape"
        )
    return side, side


def _linear(x: np.ndarray, size: int, *, axis: int) -> np.ndarray:
    """Linear interpolation of `x` along `axis` to `size` samples, end points aligned."""
    n = x.shape[axis]
    if n == size:
        return x
    scale = (n - 1) / (size - 1) if size > 1 else 0.0
    coords = np.arange(size) * scale
    lo = np.clip(np.floor(coords).astype(int), 0, n - 1)
    hi = np.minimum(lo + 1, n - 1)
    frac = (coords - lo).reshape([-1 if a == axis else 1 for a in range(x.ndim)])
    return np.take(x, lo, axis=axis) * (1 - frac) + np.take(x, hi, axis=axis) * frac
