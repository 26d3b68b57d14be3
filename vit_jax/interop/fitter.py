"""Canonical weights → a model's parameter tree: the one place that decides what is kept.

`fit` maps flat canonical weights onto the abstract params of a model (scanned or not). Parts a
model may leave out are dropped here, and only here: a head that is replaced (`fresh`, fine-tuning)
or absent (features only), a `pre_logits` layer the model has none of, and a class token the model
pools without (with its position-embedding row). The position embedding is resampled to the
model's grid. Anything else that does not fit is a one-line error naming the file and the key.
"""

from __future__ import annotations

import logging
import re

import flax.linen as nn
import jax
import numpy as np

from vit_jax import errors, posemb
from vit_jax.interop import tree

POSEMB = "Transformer/posembed_input/pos_embedding"
# Source parts a model may not have: (key prefix, what the log says when they are dropped).
OPTIONAL = (
    ("head/", "head dropped"),
    ("pre_logits/", "pre_logits dropped"),
    ("cls", "class token dropped (and its position-embedding row)"),
)


def abstract_params(module, image_size: int, channels: int) -> dict:
    """The module's params as jax.ShapeDtypeStruct (unboxed), for one image size; no compute."""
    images = jax.ShapeDtypeStruct((1, image_size, image_size, channels), np.float32)
    shapes = jax.eval_shape(lambda x: module.init(jax.random.key(0), x), images)
    return nn.unbox(shapes["params"])


def fit(
    flat: dict[str, np.ndarray],
    abstract,
    *,
    source: str,
    old_grid: tuple[int, int] | None = None,
    new_grid: tuple[int, int] | None = None,
    fresh: tuple[str, ...] = (),
) -> dict:
    """Canonical weights → a nested numpy tree with `abstract`'s structure, shapes and dtypes.

    `abstract`: the model's params as jax.ShapeDtypeStruct (`abstract_params`); a scanned model's
    stacked blocks are filled from the unrolled ones. `fresh`: regexes of params set to zeros
    instead (a new head). The position embedding is resampled from `old_grid` to `new_grid`
    (default: square grids) when their sizes differ. What changed is logged in one line.
    """
    target = tree.flatten(abstract)
    if any(k.startswith(tree.BLOCK + "/") for k in target):
        flat = tree.stack_blocks(flat)
    is_fresh = lambda k: any(re.search(p, k) for p in fresh)  # noqa: E731
    old_prefix = int("cls" in flat)
    flat, notes = _drop_unused(flat, target, is_fresh)
    if POSEMB in flat and POSEMB in target:
        pe = np.asarray(flat[POSEMB])
        flat[POSEMB] = _fit_posemb(pe, target, old_prefix, old_grid, new_grid)
        if flat[POSEMB].shape != pe.shape:
            notes.append(f"position embedding {pe.shape[1]} → {flat[POSEMB].shape[1]} tokens")
    out = _match(flat, target, is_fresh, source)
    if notes:
        logging.info("%s: %s", source, "; ".join(notes))
    return tree.unflatten(out)


def _drop_unused(flat, target, is_fresh) -> tuple[dict, list[str]]:
    """`flat` without the replaced (fresh) keys and the optional parts `target` has not."""
    fresh = sorted(k for k in target if is_fresh(k))
    notes = [f"fresh zeros for {', '.join(fresh)}"] if fresh else []
    absent = [(p, note) for p, note in OPTIONAL if not any(k.startswith(p) for k in target)]
    kept = {}
    for key, value in flat.items():
        part = next(((p, note) for p, note in absent if key.startswith(p)), None)
        if part is not None and part[1] not in notes:
            notes.append(part[1])
        if part is None and not is_fresh(key):
            kept[key] = value
    return kept, notes


def _match(flat, target, is_fresh, source) -> dict:
    """{key: array} for every target key, checked against its shape and cast to its dtype."""
    out = {}
    for key, want in target.items():
        if is_fresh(key):
            out[key] = np.zeros(want.shape, want.dtype)
            continue
        if key not in flat:
            raise errors.UserError(f"{source}: missing key {key!r} (the model needs it)")
        value = np.asarray(flat[key])
        if value.shape != tuple(want.shape):
            raise errors.UserError(
                f"{source}: key {key!r} has shape {value.shape}, "
                f"the model wants {tuple(want.shape)}"
            )
        out[key] = value.astype(want.dtype)
    extra = sorted(set(flat) - set(target))
    if extra:
        raise errors.UserError(
            f"{source}: unexpected key {extra[0]!r} (another model? pass model=NAME)"
        )
    return out


def _fit_posemb(pe, target, old_prefix, old_grid, new_grid) -> np.ndarray:
    """The stored position embedding on the target's grid (class-token row kept, or dropped)."""
    want = target[POSEMB].shape
    new_prefix = int("cls" in target)
    if pe.shape == tuple(want) and old_prefix == new_prefix:
        return pe
    new_grid = new_grid or posemb.square_grid(want[1] - new_prefix)
    out = posemb.resample(pe, new_grid=new_grid, old_grid=old_grid, num_prefix_tokens=old_prefix)
    if old_prefix > new_prefix:  # Pooling without a class token now: its row has no use.
        out = out[:, old_prefix - new_prefix :]
    if out.shape[1] != want[1]:
        raise errors.UserError(f"position embedding: cannot go from {pe.shape} to {tuple(want)}")
    return out
