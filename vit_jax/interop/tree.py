"""Parameter trees as flat {'a/b/c': array} dicts, and the layout changes interop needs.

Every reader converts to one canonical layout — our Linen names with the encoder blocks unrolled
(`Transformer/encoderblock_{i}`) — and every writer starts from it, so formats only meet here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

BLOCK = "Transformer/encoderblock"
_NUMBERED = re.compile(r"^(.*)_(\d+)$")
_BLOCK_KEY = re.compile(r"^Transformer/encoderblock_(\d+)/(.*)$")


def flatten(tree: Mapping, prefix: str = "") -> dict[str, object]:
    """{'a': {'b': x}} → {'a/b': x}."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def unflatten(flat: Mapping[str, object]) -> dict:
    """{'a/b': x} → {'a': {'b': x}}."""
    tree: dict = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def num_blocks(flat: Mapping[str, object]) -> int:
    """Encoder blocks of a canonical (unrolled) tree."""
    found = {int(m.group(1)) for k in flat if (m := _BLOCK_KEY.match(k))}
    return max(found) + 1 if found else 0


def unstack_blocks(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Scanned `Transformer/encoderblock/...` (leading layer axis) → `encoderblock_{i}/...`."""
    out = {}
    for key, value in flat.items():
        if key.startswith(BLOCK + "/"):
            rest = key[len(BLOCK) + 1 :]
            for i, layer in enumerate(np.asarray(value)):
                out[f"{BLOCK}_{i}/{rest}"] = layer
        else:
            out[key] = value
    return out


def stack_blocks(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """`encoderblock_{i}/...` → one `Transformer/encoderblock/...` with a leading layer axis."""
    layers: dict[str, dict[int, np.ndarray]] = {}
    out = {}
    for key, value in flat.items():
        m = _BLOCK_KEY.match(key)
        if m:
            layers.setdefault(m.group(2), {})[int(m.group(1))] = np.asarray(value)
        else:
            out[key] = value
    for rest, by_index in layers.items():
        out[f"{BLOCK}/{rest}"] = np.stack([by_index[i] for i in sorted(by_index)])
    return out


def renumber(tree: Mapping) -> dict:
    """Renumbers auto-named modules per type, as Linen does: pre-Linen `LayerNorm_0,
    MultiHeadDotProductAttention_1, LayerNorm_2, MlpBlock_3` → `LayerNorm_0, ..._0, LayerNorm_1,
    MlpBlock_0`. Order within a type is kept, so Linen names come back unchanged."""
    by_type: dict[str, list[tuple[int, str]]] = {}
    for key in tree:
        m = _NUMBERED.match(str(key))
        if m:
            by_type.setdefault(m.group(1), []).append((int(m.group(2)), key))
    rename = {}
    for kind, entries in by_type.items():
        for new, (_, key) in enumerate(sorted(entries)):
            rename[key] = f"{kind}_{new}"
    return {rename.get(k, k): renumber(v) if isinstance(v, Mapping) else v for k, v in tree.items()}


# Linen name → pre-Linen name inside an encoder block (one global counter per parent there).
PRE_LINEN_BLOCK = {
    "LayerNorm_0": "LayerNorm_0",
    "MultiHeadDotProductAttention_0": "MultiHeadDotProductAttention_1",
    "LayerNorm_1": "LayerNorm_2",
    "MlpBlock_0": "MlpBlock_3",
}


def to_pre_linen(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical → the published pre-Linen names (and GroupNorm params shaped (1, 1, 1, C))."""
    out = {}
    for key, value in flat.items():
        m = _BLOCK_KEY.match(key)
        if m:
            head, _, tail = m.group(2).partition("/")
            key = f"{BLOCK}_{m.group(1)}/{PRE_LINEN_BLOCK.get(head, head)}/{tail}"
        if _is_group_norm(key):
            value = np.reshape(value, (1, 1, 1, -1))
        out[key] = value
    return out


def squeeze_group_norm(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Pre-Linen GroupNorm scale/bias (1, 1, 1, C) → (C,) (flax issue #1721)."""
    return {k: np.reshape(v, (-1,)) if _is_group_norm(k) else v for k, v in flat.items()}


def _is_group_norm(key: str) -> bool:
    parts = key.split("/")
    return (
        len(parts) > 1
        and re.match(r"gn(\d+|_root|_proj)$", parts[-2]) is not None
        and parts[-1] in ("scale", "bias")
    )
