"""The README's model tables, generated from the registry: `python -m vit_jax.model_table`.

Two markdown tables: the ImageNet-size models (params with 1000 classes, GMACs at 224×224×3) and the
28×28 Fashion-MNIST variants (params with 10 classes, GMACs at 28×28×1). Parameters come from
`vit_jax.models.sizes` (abstract shapes), GMACs from `vit_jax.flops`.
"""

from __future__ import annotations

from vit_jax import flops
from vit_jax.models import registry, sizes


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
        out.append((name, c.family, sizes.count(name), gmacs / 1e9))
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
