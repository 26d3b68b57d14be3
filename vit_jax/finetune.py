"""Fine-tuning initialisation (paper §3.2): pre-trained weights, a new head, resampled posemb.

    python -m vit_jax.main --config=configs/finetune.py:model=B/16,dataset=cifar10,init=PATH ...

`train.py` calls `init_params(config, abstract_params=...)` once, for a fresh run whose
`config.init_from.path` is set (a resumed run restores its own checkpoint instead). From the source
weights (workdir / Orbax checkpoint, .npz, or timm .safetensors):
  * the head is replaced by a zero-initialised one for the new classes (as the paper: "we remove
    the pre-trained prediction head and attach a zero-initialized D × K feedforward layer"),
    unless `config.init_from.keep_head`;
  * `pre_logits` is dropped when the new model has no representation layer;
  * the class token is dropped when the new model pools without one;
  * the learned position embedding is resampled bilinearly to the new patch grid (posemb.py).
Anything else that does not fit — a missing key, another shape — is a one-line error naming the
file and the key. Freezing parts for fine-tuning is `config.optim.freeze` (regexes).
"""

from __future__ import annotations

import numpy as np
from absl import logging

from vit_jax import errors, interop
from vit_jax.interop import tree


def init_params(config, *, abstract_params) -> dict:
    """Host numpy params shaped like `abstract_params`, from `config.init_from.path`."""
    source = config.init_from.path
    weights = interop.read(source, model=config.init_from.model)
    target = tree.flatten(abstract_params)
    flat, notes = _adapt(weights.params, target, keep_head=config.init_from.keep_head)
    fresh = () if config.init_from.keep_head else (r"^head/",)
    grid = _grid(config, target)
    params = interop.fit(
        flat, abstract_params, source=source, old_grid=weights.grid, new_grid=grid, fresh=fresh
    )
    old_pe = weights.params.get(interop.POSEMB)
    new_pe = target.get(interop.POSEMB)
    if old_pe is not None and new_pe is not None and old_pe.shape != tuple(new_pe.shape):
        notes.append(f"position embedding resampled {old_pe.shape[1]} → {new_pe.shape[1]} tokens")
    logging.info("init_from %s (model %s): %s", source, weights.model, "; ".join(notes) or "as is")
    return params


def _adapt(flat: dict, target: dict, *, keep_head: bool) -> tuple[dict, list[str]]:
    """Drops the source parts the new model does not have (head, pre_logits, class token)."""
    notes = []
    drop = []
    if not keep_head:
        drop.append("head/")
        head = target.get("head/kernel")
        notes.append(f"new zero head ({head.shape[-1] if head is not None else 0} classes)")
    if "pre_logits/kernel" not in target and "pre_logits/kernel" in flat:
        drop.append("pre_logits/")
        notes.append("pre_logits dropped")
    if "cls" not in target and "cls" in flat:
        notes.append("class token dropped")  # By interop.fit, with its posemb row.
    kept = {k: v for k, v in flat.items() if not any(k.startswith(d) for d in drop)}
    return kept, notes


def _grid(config, target) -> tuple[int, int] | None:
    """The new patch grid: image size over the model's stride (square images)."""
    pe = target.get(interop.POSEMB)
    if pe is None:
        return None
    tokens = pe.shape[1] - int("cls" in target)
    side = int(round(np.sqrt(tokens)))
    if side * side == tokens:
        return side, side
    raise errors.UserError(
        f"config.data.image_size={config.data.image_size}: {tokens} patches is not a square grid"
    )
