"""Parameter counts of registered models, on abstract shapes (`jax.eval_shape`).

Nothing is allocated, so even ViT-G costs no memory. The README's tables (vit_jax/model_table.py)
and the tests count parameters through here.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax.models import create, registry


def num_params(module: nn.Module, *, image_size: int, channels: int = 3) -> int:
    """Parameter count of `module` built for `image_size`² inputs (no memory allocated)."""
    images = jax.ShapeDtypeStruct((1, image_size, image_size, channels), jnp.float32)
    variables = jax.eval_shape(lambda x: module.init(jax.random.key(0), x, train=False), images)
    params = nn.meta.unbox(variables["params"])
    return sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))


def trace_smallest(name: str, *, num_classes: int = 7) -> tuple[tuple[int, ...], int]:
    """(output shape, parameter count) of `name` traced on one image giving a 2×2 token grid.

    The cheapest full check that a registered variant builds (shapes only, nothing computed).
    """
    c = registry.spec(name)
    scan = c.num_layers > 2 if c.family != "resnet" else None  # Scanning 1-2 blocks costs more.
    module = create(name, num_classes=num_classes, scan=scan)
    size = 2 * c.total_stride
    images = jax.ShapeDtypeStruct((1, size, size, c.channels), jnp.float32)
    out, variables = jax.eval_shape(
        lambda x: module.init_with_output(jax.random.key(0), x, train=False), images
    )
    params = nn.meta.unbox(variables["params"])
    return tuple(out.shape), sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))


def count(name: str) -> int:
    """Parameters of `name` at its native size, classes and channels (scan traces faster)."""
    c = registry.spec(name)
    scan = True if c.family != "resnet" else None
    module = create(name, num_classes=c.num_classes, scan=scan)
    return num_params(module, image_size=c.image_size, channels=c.channels)
