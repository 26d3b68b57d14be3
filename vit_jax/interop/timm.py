"""timm `VisionTransformer` state dicts ↔ canonical params, stored as safetensors (never pickle).

Layout differences: torch Linear weights are (out, in) where Flax kernels are (in, out); the patch
conv is OIHW where Flax is HWIO; timm fuses query/key/value into one `attn.qkv` Linear (and MAP's
key/value into `attn_pool.kv`) where Flax keeps them per head, (D, heads, head_dim). Numerics:
timm uses exact GELU by default (our `gelu='exact'`) and LayerNorm eps 1e-6, as we do. timm has
no representation (`pre_logits`) layer, so models with one cannot be exported.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import safetensors
import safetensors.numpy

from vit_jax import errors, models, paths

_ATTN = "MultiHeadDotProductAttention_0"


def to_timm(flat: dict[str, np.ndarray], *, num_heads: int) -> dict[str, np.ndarray]:
    """Canonical (unrolled) params → a timm VisionTransformer state dict (numpy, float32)."""
    if "pre_logits/kernel" in flat:
        raise errors.UserError("timm's VisionTransformer has no pre_logits layer; cannot export it")
    if "conv_root/kernel" in flat:
        raise errors.UserError("exporting hybrid (ResNet + ViT) models to timm is not supported")
    f = {k: np.asarray(v, np.float32) for k, v in flat.items()}
    sd = {
        "patch_embed.proj.weight": f["embedding/kernel"].transpose(3, 2, 0, 1),
        "patch_embed.proj.bias": f["embedding/bias"],
    }
    if "cls" in f:
        sd["cls_token"] = f["cls"]
    if "Transformer/posembed_input/pos_embedding" in f:
        sd["pos_embed"] = f["Transformer/posembed_input/pos_embedding"]
    i = 0
    while f"Transformer/encoderblock_{i}/LayerNorm_0/scale" in f:
        sd.update(_block_to_timm(f, f"Transformer/encoderblock_{i}/", f"blocks.{i}."))
        i += 1
    sd.update(_ln(f, "Transformer/encoder_norm", "norm"))
    if "MAPHead_0/probe" in f:
        sd.update(_map_to_timm(f))
    if "head/kernel" in f:
        sd["head.weight"] = f["head/kernel"].T
        sd["head.bias"] = f["head/bias"]
    return {k: np.ascontiguousarray(v) for k, v in sd.items()}


def from_timm(sd: dict[str, np.ndarray], *, num_heads: int) -> dict[str, np.ndarray]:
    """A timm VisionTransformer state dict → canonical params (numpy)."""
    if "fc_norm.weight" in sd:
        raise errors.UserError("timm fc_norm (LayerNorm after pooling) has no counterpart here")
    s = _Recording({k: np.asarray(v, np.float32) for k, v in sd.items()})
    flat = {
        "embedding/kernel": _need(s, "patch_embed.proj.weight").transpose(2, 3, 1, 0),
        "embedding/bias": _need(s, "patch_embed.proj.bias"),
    }
    if "cls_token" in s:
        flat["cls"] = s["cls_token"]
    if "pos_embed" in s:
        flat["Transformer/posembed_input/pos_embedding"] = s["pos_embed"]
    i = 0
    while f"blocks.{i}.norm1.weight" in s:
        flat.update(
            _block_from_timm(s, f"blocks.{i}.", f"Transformer/encoderblock_{i}/", num_heads)
        )
        i += 1
    flat["Transformer/encoder_norm/scale"] = _need(s, "norm.weight")
    flat["Transformer/encoder_norm/bias"] = _need(s, "norm.bias")
    if "attn_pool.latent" in s:
        flat.update(_map_from_timm(s, num_heads))
    if "head.weight" in s:
        flat["head/kernel"] = s["head.weight"].T
        flat["head/bias"] = s["head.bias"]
    unknown = sorted(set(s) - s.used)
    if unknown:
        raise errors.UserError(
            f"unsupported timm key {unknown[0]!r} (register tokens? another model?)"
        )
    return flat


def timm_kwargs(name: str, *, num_classes: int, image_size: int, overrides: dict) -> dict:
    """Keyword arguments of `timm.models.vision_transformer.VisionTransformer` for our model."""
    s = models.resolve(name, overrides)
    if s.family != "vit":
        raise errors.UserError(f"model {name!r}: only plain ViTs have a timm counterpart")
    pool = {"token": "token", "gap": "avg", "map": "map"}[s.classifier]
    return dict(
        img_size=image_size,
        patch_size=s.patch_size,
        in_chans=s.channels,
        num_classes=num_classes,
        embed_dim=s.hidden_size,
        depth=s.num_layers,
        num_heads=s.num_heads,
        mlp_ratio=s.mlp_dim / s.hidden_size,
        class_token=s.classifier == "token",
        global_pool=pool,
        fc_norm=False,  # Our gap pools after the final LayerNorm, as timm's norm-then-pool.
        act_layer="gelu" if s.gelu == "exact" else "gelu_tanh",
    )


def write(path: str, sd: dict[str, np.ndarray], *, metadata: dict[str, object]) -> None:
    """Writes a .safetensors file atomically; metadata values are stored as JSON strings."""
    from safetensors.numpy import save

    meta = {k: json.dumps(v) for k, v in metadata.items()}
    paths.write_atomic(path, save(sd, metadata=meta))


def read(path: str) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """(state dict, metadata) of a .safetensors file (local or gs://); one-line ValueError if it
    is damaged. Local files are memory-mapped; remote ones read whole."""
    try:
        if paths.is_remote(path):
            sd, meta = _read_bytes(path)
        else:
            sd, meta = _read_local(path)
    except FileNotFoundError:
        raise errors.MissingFile(f"{path}: file not found") from None
    except (safetensors.SafetensorError, OSError, ValueError, TypeError, struct.error) as e:
        raise errors.UserError(
            f"{path}: not a readable .safetensors file ({str(e).strip()})"
        ) from None
    return sd, {k: _json_or_str(v) for k, v in meta.items()}


def _read_local(path):
    if not paths.exists(path):
        raise errors.MissingFile(path)
    with safetensors.safe_open(path, framework="numpy") as f:
        return {key: f.get_tensor(key) for key in f.keys()}, f.metadata() or {}  # noqa: SIM118


def _read_bytes(path):
    data = paths.read_bytes(path)
    (size,) = struct.unpack("<Q", data[:8])
    return safetensors.numpy.load(data), json.loads(data[8 : 8 + size]).get("__metadata__") or {}


def _block_to_timm(f, src, dst) -> dict:
    a = src + _ATTN + "/"
    d = f[a + "query/kernel"].shape[0]
    qkv = [f[a + n + "/kernel"].reshape(d, d).T for n in ("query", "key", "value")]
    return {
        **_ln(f, src + "LayerNorm_0", dst + "norm1"),
        dst + "attn.qkv.weight": np.concatenate(qkv, 0),
        dst + "attn.qkv.bias": np.concatenate(
            [f[a + n + "/bias"].reshape(d) for n in ("query", "key", "value")]
        ),
        dst + "attn.proj.weight": f[a + "out/kernel"].reshape(d, d).T,
        dst + "attn.proj.bias": f[a + "out/bias"],
        **_ln(f, src + "LayerNorm_1", dst + "norm2"),
        **_mlp(f, src + "MlpBlock_0", dst + "mlp"),
    }


def _block_from_timm(s, src, dst, heads) -> dict:
    d = s[src + "attn.proj.weight"].shape[0]
    q, k, v = np.split(_need(s, src + "attn.qkv.weight"), 3, axis=0)
    qb, kb, vb = np.split(_need(s, src + "attn.qkv.bias"), 3)
    a = dst + _ATTN + "/"
    out = {}
    for name, w, b in (("query", q, qb), ("key", k, kb), ("value", v, vb)):
        out[a + name + "/kernel"] = w.T.reshape(d, heads, d // heads)
        out[a + name + "/bias"] = b.reshape(heads, d // heads)
    out[a + "out/kernel"] = s[src + "attn.proj.weight"].T.reshape(heads, d // heads, d)
    out[a + "out/bias"] = _need(s, src + "attn.proj.bias")
    for ln, norm in (("LayerNorm_0", "norm1"), ("LayerNorm_1", "norm2")):
        out[dst + ln + "/scale"] = _need(s, src + norm + ".weight")
        out[dst + ln + "/bias"] = _need(s, src + norm + ".bias")
    for i in (0, 1):
        out[dst + f"MlpBlock_0/Dense_{i}/kernel"] = _need(s, src + f"mlp.fc{i + 1}.weight").T
        out[dst + f"MlpBlock_0/Dense_{i}/bias"] = _need(s, src + f"mlp.fc{i + 1}.bias")
    return out


def _map_to_timm(f) -> dict:
    a = "MAPHead_0/" + _ATTN + "/"
    d = f[a + "query/kernel"].shape[0]
    kv = [f[a + n + "/kernel"].reshape(d, d).T for n in ("key", "value")]
    return {
        "attn_pool.latent": f["MAPHead_0/probe"],
        "attn_pool.q.weight": f[a + "query/kernel"].reshape(d, d).T,
        "attn_pool.q.bias": f[a + "query/bias"].reshape(d),
        "attn_pool.kv.weight": np.concatenate(kv, 0),
        "attn_pool.kv.bias": np.concatenate(
            [f[a + n + "/bias"].reshape(d) for n in ("key", "value")]
        ),
        "attn_pool.proj.weight": f[a + "out/kernel"].reshape(d, d).T,
        "attn_pool.proj.bias": f[a + "out/bias"],
        **_ln(f, "MAPHead_0/LayerNorm_0", "attn_pool.norm"),
        **_mlp(f, "MAPHead_0/MlpBlock_0", "attn_pool.mlp"),
    }


def _map_from_timm(s, heads) -> dict:
    d = s["attn_pool.q.weight"].shape[0]
    k, v = np.split(s["attn_pool.kv.weight"], 2, axis=0)
    kb, vb = np.split(s["attn_pool.kv.bias"], 2)
    a = "MAPHead_0/" + _ATTN + "/"
    out = {"MAPHead_0/probe": s["attn_pool.latent"]}
    for name, w, b in (
        ("query", s["attn_pool.q.weight"], s["attn_pool.q.bias"]),
        ("key", k, kb),
        ("value", v, vb),
    ):
        out[a + name + "/kernel"] = w.T.reshape(d, heads, d // heads)
        out[a + name + "/bias"] = b.reshape(heads, d // heads)
    out[a + "out/kernel"] = s["attn_pool.proj.weight"].T.reshape(heads, d // heads, d)
    out[a + "out/bias"] = s["attn_pool.proj.bias"]
    out["MAPHead_0/LayerNorm_0/scale"] = s["attn_pool.norm.weight"]
    out["MAPHead_0/LayerNorm_0/bias"] = s["attn_pool.norm.bias"]
    for i in (0, 1):
        out[f"MAPHead_0/MlpBlock_0/Dense_{i}/kernel"] = s[f"attn_pool.mlp.fc{i + 1}.weight"].T
        out[f"MAPHead_0/MlpBlock_0/Dense_{i}/bias"] = s[f"attn_pool.mlp.fc{i + 1}.bias"]
    return out


class _Recording(dict):
    """A dict that remembers which keys were read (to refuse parts a conversion would drop)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.used: set[str] = set()

    def __getitem__(self, key):
        self.used.add(key)
        return super().__getitem__(key)


def _ln(f, src, dst) -> dict:
    return {dst + ".weight": f[src + "/scale"], dst + ".bias": f[src + "/bias"]}


def _mlp(f, src, dst) -> dict:
    return {
        dst + f".fc{i + 1}.{p}": (
            f[f"{src}/Dense_{i}/kernel"].T if p == "weight" else f[f"{src}/Dense_{i}/bias"]
        )
        for i in (0, 1)
        for p in ("weight", "bias")
    }


def _need(s, key):
    if key not in s:
        raise errors.UserError(f"missing timm key {key!r}")
    return s[key]


def _json_or_str(value: str):
    try:
        return json.loads(value)
    except ValueError:
        return value
