"""Optimizers and schedules: the paper's pre-training (Adam) and fine-tuning (SGD) recipes.

Pre-training (paper §4.1, Table 3): Adam(0.9, 0.999), decoupled weight decay 0.1, global-norm
clipping 1.0, linear warm-up then linear or cosine decay. Fine-tuning (Table 4): SGD with momentum
0.9, no weight decay, clipping 1.0, warm-up then cosine. Which parameters decay or stay frozen is
chosen by regexes over parameter paths (`vit_jax.param_paths.match`), the same rule mechanism the
sharding uses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from vit_jax import param_paths


def schedule(optim_config, *, total_steps: int) -> optax.Schedule:
    """Linear warm-up from 0 to lr, then cosine / linear decay to 0 at total_steps, or constant."""
    lr, warmup = optim_config.lr, min(optim_config.warmup_steps, max(total_steps - 1, 0))
    decay_steps = max(total_steps - warmup, 1)

    def fn(step):
        step = jnp.asarray(step, jnp.float32)
        warm = lr * step / max(warmup, 1)
        progress = jnp.clip((step - warmup) / decay_steps, 0.0, 1.0)
        decayed = {
            "cosine": lr * 0.5 * (1.0 + jnp.cos(jnp.pi * progress)),
            "linear": lr * (1.0 - progress),
            "constant": jnp.asarray(lr, jnp.float32),
        }[optim_config.schedule]
        return jnp.where(step < warmup, warm, decayed)

    return fn


def make(optim_config, *, total_steps: int, params) -> optax.GradientTransformation:
    """The optax chain for config.optim; `params` (arrays or shapes) sets the masks."""
    lr = schedule(optim_config, total_steps=total_steps)
    parts = []
    if optim_config.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(optim_config.grad_clip_norm))
    if optim_config.name == "adam":
        parts.append(optax.scale_by_adam(b1=optim_config.b1, b2=optim_config.b2))
    else:
        parts.append(optax.trace(decay=optim_config.momentum))
    if optim_config.weight_decay:
        mask = param_paths.match(params, optim_config.decay_rules)
        parts.append(optax.add_decayed_weights(optim_config.weight_decay, mask=mask))
    parts.append(optax.scale_by_learning_rate(lr))
    tx = optax.chain(*parts)
    if optim_config.freeze:
        frozen = param_paths.match(params, optim_config.freeze)
        labels = jax.tree.map(lambda f: "frozen" if f else "train", frozen)
        tx = optax.multi_transform({"train": tx, "frozen": optax.set_to_zero()}, labels)
    return tx
