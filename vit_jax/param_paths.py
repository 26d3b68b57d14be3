"""Parameter paths as 'a/b/c' strings, and regex rules over them.

The one rule mechanism of the code base: weight-decay masks and frozen parameters (optim.py),
sharding placement (sharding.py) and checkpoint key checks (checkpoint.py) all name parameters
this way. A leaf module (JAX only), so each of those can use it without importing the others.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import jax


def names(path) -> tuple[str, ...]:
    """The key names along a JAX key path: ('Transformer', 'encoder_norm', 'scale')."""
    return tuple(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)


def path_str(path) -> str:
    """'Transformer/encoderblock_0/MlpBlock_0/Dense_0/kernel' for a params key path."""
    return "/".join(names(path))


def match(tree, patterns: Sequence[str]):
    """Tree of bools: True where a leaf's 'a/b/c' path matches any regex (re.search)."""
    compiled = [re.compile(p) for p in patterns]
    return jax.tree_util.tree_map_with_path(
        lambda path, _: any(c.search(path_str(path)) for c in compiled), tree
    )
