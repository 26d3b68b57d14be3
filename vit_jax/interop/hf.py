"""Hugging Face `transformers` ViT folders (config.json + model.safetensors) ↔ canonical params.

A `ViTForImageClassification` is our class-token ViT: pre-LayerNorm blocks, a final LayerNorm,
the head on the class token. Layout differences: torch Linear weights are (out, in) where Flax
kernels are (in, out) and keep heads apart, (D, heads, head_dim); the patch conv is OIHW where
Flax is HWIO. Numerics: HF's `hidden_act` 'gelu' is exact GELU, 'gelu_pytorch_tanh' / 'gelu_new'
the tanh form; its LayerNorm eps defaults to 1e-12 where ours is 1e-6, so exports write 1e-6 and
imports accept eps ≤ 1e-5 (the logits move by ~1e-6 relative). Models with a representation
(`pre_logits`) layer, without a class token, or hybrids have no counterpart and are refused.
"""

from __future__ import annotations

import json

import numpy as np

from vit_jax import errors, models, paths

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
_ACTS = {"gelu": "exact", "gelu_pytorch_tanh": "tanh", "gelu_new": "tanh"}
_ACT_OUT = {"exact": "gelu", "tanh": "gelu_pytorch_tanh"}
_ATTN = "MultiHeadDotProductAttention_0/"
_POSEMB = "Transformer/posembed_input/pos_embedding"
_MAX_EPS = 1e-5


def is_folder(config: dict | None) -> bool:
    """Whether a folder's parsed config.json is a transformers ViT's (not one of our runs')."""
    return isinstance(config, dict) and config.get("model_type") == "vit"


def read(path: str, config: dict) -> tuple[dict[str, np.ndarray], dict]:
    """(canonical params, metadata for interop) of an HF ViT folder; a one-line UserError on what
    has no counterpart here. Absent config keys take HF's defaults (save_pretrained omits them)."""
    from vit_jax.interop import timm  # Its safetensors reader: local or gs://, one-line errors.

    folder = str(path).rstrip("/")
    act, eps = config.get("hidden_act", "gelu"), config.get("layer_norm_eps", 1e-12)
    if act not in _ACTS:
        raise errors.UserError(f"{folder}: hidden_act {act!r} unsupported (one of {sorted(_ACTS)})")
    if eps > _MAX_EPS:
        raise errors.UserError(f"{folder}: layer_norm_eps {eps} differs from ours (1e-6) too much")
    if not config.get("qkv_bias", True):
        raise errors.UserError(f"{folder}: qkv_bias=false has no counterpart here")
    sd, _ = timm.read(f"{folder}/{WEIGHTS}")
    flat = from_hf(sd, num_heads=int(config.get("num_attention_heads", 12)), source=folder)
    labels = config.get("id2label") or {}
    names = [labels.get(str(i), "") for i in range(len(labels))]
    default = all(n == f"LABEL_{i}" for i, n in enumerate(names))
    meta = {
        "model": config.get("vit_jax_model"),
        "gelu": _ACTS[act],
        "image_size": _side(config.get("image_size", 224)),
        "class_names": None if default or not all(names) else names,
    }
    return flat, meta


def from_hf(sd: dict[str, np.ndarray], *, num_heads: int, source: str) -> dict[str, np.ndarray]:
    """A ViTForImageClassification state dict → canonical params (numpy float32)."""
    s = {k: np.asarray(v, np.float32) for k, v in sd.items()}
    need = lambda key: _need(s, key, source)  # noqa: E731
    e = "vit.embeddings."
    flat = {
        "embedding/kernel": need(e + "patch_embeddings.projection.weight").transpose(2, 3, 1, 0),
        "embedding/bias": need(e + "patch_embeddings.projection.bias"),
        "cls": need(e + "cls_token"),
        _POSEMB: need(e + "position_embeddings"),
        "Transformer/encoder_norm/scale": need("vit.layernorm.weight"),
        "Transformer/encoder_norm/bias": need("vit.layernorm.bias"),
    }
    i = 0
    while f"vit.encoder.layer.{i}.layernorm_before.weight" in s:
        flat.update(_block_from_hf(need, i, num_heads))
        i += 1
    if "classifier.weight" in s:
        flat["head/kernel"] = s["classifier.weight"].T
        flat["head/bias"] = need("classifier.bias")
    unknown = sorted(set(s) - set(to_hf(flat)))  # Parts a conversion would silently drop.
    if unknown:
        raise errors.UserError(f"{source}: unsupported Hugging Face key {unknown[0]!r}")
    return flat


def to_hf(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical (unrolled) params → a ViTForImageClassification state dict (numpy float32)."""
    if "pre_logits/kernel" in flat:
        raise errors.UserError("Hugging Face ViTForImageClassification has no pre_logits layer")
    if "conv_root/kernel" in flat or "cls" not in flat or _POSEMB not in flat:
        raise errors.UserError(
            "only class-token ViTs with learned position embeddings export to HF"
        )
    f = {k: np.asarray(v, np.float32) for k, v in flat.items()}
    e = "vit.embeddings."
    sd = {
        e + "cls_token": f["cls"],
        e + "position_embeddings": f[_POSEMB],
        e + "patch_embeddings.projection.weight": f["embedding/kernel"].transpose(3, 2, 0, 1),
        e + "patch_embeddings.projection.bias": f["embedding/bias"],
        "vit.layernorm.weight": f["Transformer/encoder_norm/scale"],
        "vit.layernorm.bias": f["Transformer/encoder_norm/bias"],
    }
    i = 0
    while f"Transformer/encoderblock_{i}/LayerNorm_0/scale" in f:
        sd.update(_block_to_hf(f, i))
        i += 1
    if "head/kernel" in f:
        sd["classifier.weight"] = f["head/kernel"].T
        sd["classifier.bias"] = f["head/bias"]
    return {k: np.ascontiguousarray(v) for k, v in sd.items()}


def write(weights, directory: str) -> None:
    """Writes `weights` (an interop.Weights) as a new HF folder: config.json + model.safetensors."""
    from safetensors.numpy import save

    s = models.resolve(weights.model, weights.overrides)
    if s.family != "vit" or s.classifier != "token":
        raise errors.UserError(
            f"model {weights.model!r}: only class-token ViTs have an HF counterpart"
        )
    if not weights.num_classes:
        raise errors.UserError("ViTForImageClassification needs a head; these weights have none")
    sd = to_hf(weights.params)
    names = list(weights.class_names or (f"LABEL_{i}" for i in range(weights.num_classes)))
    config = {
        "architectures": ["ViTForImageClassification"],
        "model_type": "vit",
        "vit_jax_model": weights.model,
        "hidden_size": s.hidden_size,
        "num_hidden_layers": s.num_layers,
        "num_attention_heads": s.num_heads,
        "intermediate_size": s.mlp_dim,
        "hidden_act": _ACT_OUT[s.gelu],
        "layer_norm_eps": 1e-6,  # Ours (flax's default); HF's default is 1e-12.
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "image_size": weights.image_size or s.image_size,
        "patch_size": s.patch_size,
        "num_channels": s.channels,
        "qkv_bias": True,
        "id2label": {str(i): n for i, n in enumerate(names)},
        "label2id": {n: i for i, n in enumerate(names)},
    }
    folder = paths.makedirs(directory)  # Local or gs:// alike.
    paths.write_text(folder / CONFIG, json.dumps(config, indent=2))
    paths.write_bytes(folder / WEIGHTS, save(sd, metadata={"format": "pt"}))


def _block_from_hf(need, i: int, heads: int) -> dict:
    src, dst = f"vit.encoder.layer.{i}.", f"Transformer/encoderblock_{i}/"
    a = src + "attention."
    d = need(a + "output.dense.weight").shape[0]
    out = {}
    for name in ("query", "key", "value"):
        out[dst + _ATTN + name + "/kernel"] = need(a + f"attention.{name}.weight").T.reshape(
            d, heads, d // heads
        )
        out[dst + _ATTN + name + "/bias"] = need(a + f"attention.{name}.bias").reshape(
            heads, d // heads
        )
    out[dst + _ATTN + "out/kernel"] = need(a + "output.dense.weight").T.reshape(
        heads, d // heads, d
    )
    out[dst + _ATTN + "out/bias"] = need(a + "output.dense.bias")
    for ln, hf in (("LayerNorm_0", "layernorm_before"), ("LayerNorm_1", "layernorm_after")):
        out[dst + ln + "/scale"] = need(src + hf + ".weight")
        out[dst + ln + "/bias"] = need(src + hf + ".bias")
    for j, hf in enumerate(("intermediate.dense", "output.dense")):
        out[dst + f"MlpBlock_0/Dense_{j}/kernel"] = need(src + hf + ".weight").T
        out[dst + f"MlpBlock_0/Dense_{j}/bias"] = need(src + hf + ".bias")
    return out


def _block_to_hf(f, i: int) -> dict:
    src, dst = f"Transformer/encoderblock_{i}/", f"vit.encoder.layer.{i}."
    a = src + _ATTN
    d = f[a + "query/kernel"].shape[0]
    out = {}
    for name in ("query", "key", "value"):
        out[dst + f"attention.attention.{name}.weight"] = f[a + name + "/kernel"].reshape(d, d).T
        out[dst + f"attention.attention.{name}.bias"] = f[a + name + "/bias"].reshape(d)
    out[dst + "attention.output.dense.weight"] = f[a + "out/kernel"].reshape(d, d).T
    out[dst + "attention.output.dense.bias"] = f[a + "out/bias"]
    for ln, hf in (("LayerNorm_0", "layernorm_before"), ("LayerNorm_1", "layernorm_after")):
        out[dst + hf + ".weight"] = f[src + ln + "/scale"]
        out[dst + hf + ".bias"] = f[src + ln + "/bias"]
    for j, hf in enumerate(("intermediate.dense", "output.dense")):
        out[dst + hf + ".weight"] = f[src + f"MlpBlock_0/Dense_{j}/kernel"].T
        out[dst + hf + ".bias"] = f[src + f"MlpBlock_0/Dense_{j}/bias"]
    return out


def _need(s: dict, key: str, source: str) -> np.ndarray:
    if key not in s:
        raise errors.UserError(f"{source}: missing Hugging Face key {key!r}")
    return s[key]


def _side(size) -> int | None:
    if isinstance(size, list | tuple):
        return int(size[0]) if len(set(size)) == 1 else None
    return int(size) if size else None
