"""`analyse(classifier, images, labels, out_dir=...)`: every analysis that applies to the model,
as PNGs and one JSON of the numbers (`analysis.json`) in `out_dir`.

ViT and hybrid: mean attention distance, attention rollout, position-embedding similarity (learned
or sin-cos); every family: principal components of the image-facing filters (ViT patch embedding,
else the ResNet root conv) and the translation probe.
"""

from __future__ import annotations

import json

import numpy as np

from vit_jax import errors, interop, paths
from vit_jax.inspect import attention, embeddings, plots, translation
from vit_jax.interop import tree
from vit_jax.models import registry, vit

JSON_NAME = "analysis.json"
ATTENTION_BATCH = 16  # Images per attention_maps call: bounds the [L, B, H, T, T] array.
ROLLOUT_IMAGES = 8


def analyse(classifier, images, labels, *, out_dir: str, max_shift: int = 4) -> dict:
    """Run the analyses on float images in [-1, 1] ([B, S, S, C], the classifier's size) and
    their integer labels; write the PNGs and `analysis.json` to `out_dir`; return the numbers."""
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    if len(images) != len(labels) or not len(images):
        raise errors.UserError(
            f"need as many labels as images (>0), got {len(images)}, {len(labels)}"
        )
    paths.makedirs(out_dir)  # Local or gs:// alike.
    spec = classifier.spec
    result = {
        "model": classifier.model_name,
        "family": spec.family,
        "image_size": classifier.image_size,
        "num_images": len(images),
        "figures": [],
    }
    if spec.family != "resnet":
        result.update(_attention(classifier, images, out_dir, result["figures"]))
        result.update(_positions(classifier, out_dir, result["figures"]))
    result.update(_filters(classifier, out_dir, result["figures"]))
    probe = translation.probe(classifier, images, labels, max_shift=max_shift)
    result["translation"] = probe
    title = f"{classifier.model_name}: translation probe"
    result["figures"].append(plots.translation(probe, title=title, path=_png(out_dir, "shift")))
    paths.write_text(paths.path(out_dir) / JSON_NAME, json.dumps(result, indent=1))
    return result


def _attention(classifier, images, out_dir, figures) -> dict:
    prefix = int(classifier.spec.classifier == "token")
    side = token_side(classifier)
    stride = classifier.image_size / side
    distances, joints = [], []
    for start in range(0, len(images), ATTENTION_BATCH):
        chunk = images[start : start + ATTENTION_BATCH]
        maps = classifier.attention_maps(chunk)
        d = attention.mean_attention_distance(maps, stride=stride, num_prefix_tokens=prefix)
        distances.append(d * len(chunk))
        if start == 0:
            joints = attention.rollout(maps[:, :ROLLOUT_IMAGES])
    distance = np.sum(distances, axis=0) / len(images)
    uniform = float(attention.grid_distances(side, stride=stride).mean())
    title = f"{classifier.model_name}: token stride {stride:g} px"
    figures.append(
        plots.attention_distance(
            distance, uniform=uniform, title=title, path=_png(out_dir, "attention_distance")
        )
    )
    heat = attention.token_map(joints, num_prefix_tokens=prefix)
    shown = images[: len(heat)]
    figures.append(plots.rollout(shown, heat, path=_png(out_dir, "rollout")))
    return {
        "mean_attention_distance": distance.tolist(),
        "uniform_attention_distance": uniform,
        "token_stride_pixels": stride,
        "rollout_row_sum_max_error": float(np.abs(joints.sum(-1) - 1).max()),
    }


def _positions(classifier, out_dir, figures) -> dict:
    prefix = int(classifier.spec.classifier == "token")
    kind = classifier.spec.posemb
    side = token_side(classifier)
    if kind == "learn":
        table = np.asarray(tree.flatten(classifier.params)[interop.POSEMB])[0, prefix:]
    else:
        table = vit.posemb_sincos2d(side, side, classifier.spec.hidden_size)[0]
    similarity = embeddings.cosine_grid(table, grid=(side, side))
    title = f"{classifier.model_name}: position embedding ({kind}) similarity"
    path = _png(out_dir, "position_similarity")
    figures.append(plots.position_similarity(similarity, title=title, path=path))
    return {
        "position_embedding": {
            "kind": kind,
            "grid": [side, side],
            "similarity_by_distance": embeddings.similarity_by_distance(similarity),
        }
    }


def _filters(classifier, out_dir, figures) -> dict:
    flat = tree.flatten(classifier.params)
    name = "conv_root/kernel" if "conv_root/kernel" in flat else "embedding/kernel"
    components, explained = embeddings.filter_components(np.asarray(flat[name]))
    figures.append(plots.filter_components(components, explained, path=_png(out_dir, "filters")))
    return {"filter_components": {"kernel": name, "explained_variance": explained.tolist()}}


def token_side(classifier) -> int:
    """Tokens along a side of the classifier's input (ViT patches, or a hybrid's trunk cells)."""
    return registry.grid_side(classifier.spec, classifier.image_size)


def _png(out_dir: str, name: str) -> str:
    return str(paths.path(out_dir) / f"{name}.png")
