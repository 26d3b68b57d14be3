"""The figures of `analyse`, each written to one PNG (matplotlib, no display needed)."""

from __future__ import annotations

import io
import os

import numpy as np

from vit_jax import paths


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
    paths.write_bytes(path, buffer.getvalue())  # Local or gs:// alike.
    return os.path.basename(path)


def attention_distance(distance: np.ndarray, *, uniform: float, title: str, path: str) -> str:
    """Fig. 7 right: one dot per head at each depth; the dashed line is uniform attention."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    layers, heads = distance.shape
    for h in range(heads):
        ax.scatter(np.arange(1, layers + 1), distance[:, h], s=14, label=f"head {h + 1}")
    ax.axhline(uniform, color="gray", ls="--", lw=1, label="uniform attention")
    ax.set(xlabel="network depth (layer)", ylabel="mean attention distance (pixels)", title=title)
    ax.set_xticks(np.arange(1, layers + 1))
    ax.set_ylim(0, 1.1 * max(uniform, float(distance.max())))
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    return _save(fig, path)


def position_similarity(similarity: np.ndarray, *, title: str, path: str) -> str:
    """Fig. 7 centre: tile (i, j) is the cosine of position (i, j)'s embedding with all others."""
    plt = _pyplot()
    h, w = similarity.shape[:2]
    fig, ax = plt.subplots(figsize=(0.5 * w + 1.5, 0.5 * h + 0.5))
    image = ax.imshow(mosaic(similarity), cmap="viridis", vmin=-1, vmax=1)
    ax.set(xlabel="input patch column", ylabel="input patch row", title=title)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.colorbar(image, ax=ax, shrink=0.8, label="cosine similarity")
    return _save(fig, path)


def filter_components(components: np.ndarray, explained: np.ndarray, *, path: str) -> str:
    """Fig. 7 left: the principal components of the embedding filters, 7 to a row, each scaled
    to its own range."""
    plt = _pyplot()
    count, kh, kw, c = components.shape
    lo = components.min(axis=(1, 2, 3), keepdims=True)
    span = np.maximum(components.max(axis=(1, 2, 3), keepdims=True) - lo, 1e-12)
    scaled = ((components - lo) / span)[..., :3] if c >= 3 else ((components - lo) / span)[..., 0]
    rows = -(-count // 7)
    padded = np.full((rows * 7,) + scaled.shape[1:], np.nan)
    padded[:count] = scaled
    tiles = padded.reshape((rows, 7) + scaled.shape[1:])
    fig, ax = plt.subplots(figsize=(7 * 1.0, rows * 1.0 + 0.6))
    ax.imshow(mosaic(tiles), cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
    shares = ", ".join(f"{100 * e:.0f}" for e in explained[:7])
    ax.set_title(
        f"embedding filters: first {count} principal components\n"
        f"(% of variance, first 7: {shares})",
        fontsize=9,
    )
    return _save(fig, path)


def mosaic(tiles: np.ndarray) -> np.ndarray:
    """[R, C, h, w, ...] → one [R·(h+1)−1, C·(w+1)−1, ...] image, tiles parted by NaN lines
    (drawn blank): a grid of small images in one imshow, fast where subplots are not."""
    rows, cols, h, w = tiles.shape[:4]
    out = np.full((rows * (h + 1) - 1, cols * (w + 1) - 1) + tiles.shape[4:], np.nan)
    for r, c in np.ndindex(rows, cols):
        out[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = tiles[r, c]
    return out


def rollout(images: np.ndarray, maps: np.ndarray, *, path: str) -> str:
    """Fig. 6: each image with its rollout map laid over it."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(images), figsize=(2 * len(images), 2.2), squeeze=False)
    for ax, x, heat in zip(axes[0], images, maps, strict=True):
        ax.imshow((x + 1) / 2 if x.shape[-1] == 3 else x[..., 0], cmap="gray", vmin=-1, vmax=1)
        extent = (-0.5, x.shape[1] - 0.5, x.shape[0] - 0.5, -0.5)
        ax.imshow(heat, cmap="inferno", alpha=0.5, extent=extent)
        ax.axis("off")
    fig.suptitle("attention rollout", fontsize=9)
    return _save(fig, path)


def translation(result: dict, *, title: str, path: str) -> str:
    """Accuracy and agreement with the unshifted predictions against the shift in pixels."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(result["shift"], result["accuracy"], "o-", label="top-1 accuracy")
    ax.plot(result["shift"], result["agreement"], "s--", label="agreement with unshifted")
    ax.set(xlabel="shift (pixels)", ylabel="fraction", title=title, ylim=(0, 1.02))
    ax.set_xticks(result["shift"])
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)
