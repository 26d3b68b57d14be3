"""The figures of `analyse`, each written to one PNG (matplotlib, no display needed)."""

from __future__ import annotations

import os

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> str:
    fig.savefig(path, dpi=100, bbox_inches="tight")
    _pyplot().close(fig)
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
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))
    return _save(fig, path)


def position_similarity(similarity: np.ndarray, *, title: str, path: str) -> str:
    """Fig. 7 centre: panel (i, j) is the cosine of position (i, j)'s embedding with all others."""
    plt = _pyplot()
    h, w = similarity.shape[:2]
    fig, axes = plt.subplots(h, w, figsize=(0.6 * w + 1, 0.6 * h), squeeze=False)
    for (i, j), ax in np.ndenumerate(axes):
        image = ax.imshow(similarity[i, j], cmap="viridis", vmin=-1, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.8, label="cosine similarity")
    return _save(fig, path)


def filter_components(components: np.ndarray, explained: np.ndarray, *, path: str) -> str:
    """Fig. 7 left: the principal components of the embedding filters, 7 to a row."""
    plt = _pyplot()
    count = len(components)
    rows = -(-count // 7)
    fig, axes = plt.subplots(rows, 7, figsize=(7 * 1.1, rows * 1.25), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, pc, share in zip(axes.flat, components, explained, strict=False):
        lo, hi = pc.min(), pc.max()
        image = (pc - lo) / (hi - lo) if hi > lo else np.zeros_like(pc)
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image[..., :3], cmap="gray")
        ax.set_title(f"{100 * share:.1f}%", fontsize=7)
    fig.suptitle("principal components of the embedding filters", fontsize=9)
    return _save(fig, path)


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
    ax.legend(fontsize=8, loc="lower left")
    return _save(fig, path)
