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
    """Host numpy params shaped like `abstract_params`, from `config.init_from.path`.

    What is dropped, zeroed or resampled is `interop.fit`'s one rule (it logs what it did).
    """
    source = config.init_from.path
    weights = interop.read(source, model=config.init_from.model)
    fresh = () if config.init_from.keep_head else (r"^head/",)
    grid = _grid(config, tree.flatten(abstract_params))
    logging.info("init_from %s (model %s)", source, weights.model)
    return interop.fit(
        weights.params,
        abstract_params,
        source=source,
        old_grid=weights.grid,
        new_grid=grid,
        fresh=fresh,
    )


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
