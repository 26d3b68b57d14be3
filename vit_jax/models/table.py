"""The README's model tables, generated from the registry: `python -m vit_jax.models.table`.

Two markdown tables: the ImageNet-size models (params with 1000 classes, GMACs at 224×224×3) and the
28×28 Fashion-MNIST variants (params with 10 classes, GMACs at 28×28×1). Parameters are counted on
abstract shapes (`jax.eval_shape`), so even ViT-G costs no memory; GMACs come from `vit_jax.flops`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from vit_jax import flops, models
from vit_jax.models import registry


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
    module = models.create(name, num_classes=num_classes, scan=scan)
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
    module = models.create(name, num_classes=c.num_classes, scan=scan)
    return num_params(module, image_size=c.image_size, channels=c.channels)


def rows(*, small: bool) -> list[tuple[str, str, int, float]]:
    """(name, family, params, GMACs) for every canonical name of the 224 (or 28×28) family."""
    out = []
    for name in registry.canonical_names():
        c = registry.spec(name)
        if (c.image_size == 28) != small:
            continue
        gmacs = flops.macs(
            name, image_size=c.image_size, num_classes=c.num_classes, channels=c.channels
        )
        out.append((name, c.family, count(name), gmacs / 1e9))
    return out


def markdown(rows_: list[tuple[str, str, int, float]], *, title: str) -> str:
    lines = [f"#### {title}", "", "| model | family | params | GMACs |", "|---|---|---:|---:|"]
    for name, family, params, gmacs in rows_:
        lines.append(f"| {name} | {family} | {params:,} | {gmacs:.4g} |")
    return "\n".join(lines)


def main() -> None:
    print(markdown(rows(small=False), title="224×224×3, 1000 classes"))
    print()
    print(markdown(rows(small=True), title="28×28×1 (Fashion-MNIST), 10 classes"))


if __name__ == "__main__":
    main()
