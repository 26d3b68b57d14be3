"""`.npz` weights: the original vit_jax / AugReg files and big_vision checkpoints.

Read with `allow_pickle=False` (a pickled array is refused, never executed) and every array decoded
up front, so a truncated file fails here with one line naming the file and the key, not later in a
model. Name conventions met in published files, all mapped to the canonical layout:
  * pre-Linen auto-names (`MultiHeadDotProductAttention_1`, `LayerNorm_2`, `MlpBlock_3`),
  * GroupNorm scale/bias shaped (1, 1, 1, C) in hybrids,
  * big_vision: a `params/` (or old Flax `opt/target/`) prefix, scanned `Transformer/encoderblock`
    with a leading layer axis, and a top-level `pos_embedding` that does not cover the class token.
"""

from __future__ import annotations

import io
import zipfile
import zlib

import numpy as np

from vit_jax import errors, paths
from vit_jax.interop import tree

_PREFIXES = ("params/", "opt/target/")
_POSEMB = "Transformer/posembed_input/pos_embedding"


def read(path: str) -> dict[str, np.ndarray]:
    """Flat {'a/b/c': array} of an .npz file, exactly as stored."""
    out = {}
    with _open(path) as f, _archive(path, f) as archive:
        for key in archive.files:
            try:
                out[key] = archive[key]
            except ValueError as e:
                if "allow_pickle" in str(e):
                    raise errors.UserError(
                        f"{path}: key {key!r} holds pickled objects; refusing to unpickle"
                    ) from None
                raise errors.UserError(
                    f"{path}: key {key!r} is corrupt ({_first_line(e)})"
                ) from None
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
                raise errors.UserError(
                    f"{path}: key {key!r} is truncated or corrupt ({_first_line(e)})"
                ) from None
    if not out:
        raise errors.UserError(f"{path}: empty .npz file")
    return out


def to_canonical(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Any supported npz naming → canonical (Linen names, blocks unrolled, GroupNorm (C,))."""
    for prefix in _PREFIXES:
        if f"{prefix}embedding/kernel" in flat:
            flat = {k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)}
            break
    flat = tree.unstack_blocks(flat)
    flat = tree.flatten(tree.renumber(tree.unflatten(flat)))
    flat = tree.squeeze_group_norm(flat)
    if "pos_embedding" in flat:  # big_vision: added before the class token is prepended.
        pe = flat.pop("pos_embedding")
        if "cls" in flat:  # A zero row for the class token: the same sums as big_vision.
            pe = np.concatenate([np.zeros_like(pe[:, :1]), pe], axis=1)
        flat[_POSEMB] = pe
    return flat


def from_canonical(flat: dict[str, np.ndarray], *, pre_linen: bool) -> dict[str, np.ndarray]:
    """Canonical → npz names: Linen (big_vision, AugReg) or the original pre-Linen ones."""
    flat = {k: np.asarray(v) for k, v in flat.items()}
    return tree.to_pre_linen(flat) if pre_linen else flat


def write(path: str, flat: dict[str, np.ndarray]) -> None:
    """Writes an uncompressed .npz (local or gs://) atomically (temporary name, then rename)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in flat.items()})
    paths.write_atomic(path, buffer.getvalue())


def _open(path: str):
    try:
        return paths.path(path).open("rb")
    except FileNotFoundError:
        raise errors.MissingFile(f"{path}: file not found") from None


def _archive(path: str, f):
    try:
        archive = np.load(f, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise errors.UserError(f"{path}: not a readable .npz file ({_first_line(e)})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise errors.UserError(f"{path}: a single .npy array, not an .npz archive of named weights")
    return archive


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
