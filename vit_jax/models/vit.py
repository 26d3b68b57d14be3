"""Vision Transformer (and its ResNet hybrid), parameter-compatible with the reference vit_jax.

Parameter tree (unrolled): `embedding`, `cls`, `Transformer/posembed_input/pos_embedding`,
`Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_0, LayerNorm_1,
MlpBlock_0/{Dense_0,Dense_1}}`, `Transformer/encoder_norm`, `MAPHead_0` (classifier='map'),
`pre_logits` (representation layer), `head`; hybrids add `conv_root`, `gn_root`, `block{i}` at top
level. With `scan=True` the blocks are one module `Transformer/encoderblock` whose parameters carry
a leading layer axis (logical name 'layers'); interop code stacks/unstacks `encoderblock_{i}`.

Regularisation: dropout after the embeddings and inside the MLP, dropout on attention weights, and
stochastic depth = per-example drop-path on each residual branch, its rate rising *linearly* from 0
at the first block to `stochastic_depth` at the last (timm / big_vision convention).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vit_jax import errors
from vit_jax.models import resnet
from vit_jax.models.attention import MultiHeadDotProductAttention

Dtype = Any
_REMAT_POLICIES = {
    "full": None,  # jax.checkpoint's default: nothing saveable, all recomputed.
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.checkpoint_dots_with_no_batch_dims,
}


def _init(init, *axes):
    return nn.with_logical_partitioning(init, axes)


def _layer_norm(name=None, *, dtype, param_dtype):
    return nn.LayerNorm(
        epsilon=1e-6,
        scale_init=_init(nn.initializers.ones, "embed"),
        bias_init=_init(nn.initializers.zeros, "embed"),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


def posemb_sincos2d(h: int, w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
    """Fixed 2D sin-cos position embedding [1, h·w, width] (big_vision layout)."""
    if width % 4:
        raise errors.UserError(f"sincos2d position embedding needs width % 4 == 0, got {width}")
    y, x = np.mgrid[:h, :w]
    omega = np.arange(width // 4) / max(width // 4 - 1, 1)
    omega = 1.0 / temperature**omega
    y = np.einsum("m,d->md", y.flatten(), omega)
    x = np.einsum("m,d->md", x.flatten(), omega)
    pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
    return pe[None].astype(np.float32)


def drop_path(module: nn.Module, x, rate):
    """Per-example stochastic depth: zero the whole branch for a fraction `rate` of the batch."""
    keep = 1.0 - rate
    mask = jax.random.bernoulli(
        module.make_rng("dropout"), keep, (x.shape[0],) + (1,) * (x.ndim - 1)
    )
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros_like(x))


class AddPositionEmbs(nn.Module):
    """Adds a learned position embedding [1, tokens, D] (normal, std 0.02, as BERT)."""

    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        init = _init(nn.initializers.normal(stddev=0.02), None, "posemb", "embed")
        pe = self.param("pos_embedding", init, (1,) + x.shape[1:], self.param_dtype)
        return x + pe.astype(x.dtype)


class MlpBlock(nn.Module):
    """Dense → GELU (tanh-approximate as the reference, or exact as timm) → Dense, with dropout."""

    mlp_dim: int
    dropout_rate: float = 0.0
    gelu: str = "tanh"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, deterministic: bool):
        width = x.shape[-1]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        bias = nn.initializers.normal(stddev=1e-6)
        xavier = nn.initializers.xavier_uniform()
        x = nn.Dense(
            self.mlp_dim,
            kernel_init=_init(xavier, "embed", "mlp"),
            bias_init=_init(bias, "mlp"),
            **kw,
        )(x)
        x = nn.gelu(x, approximate=self.gelu == "tanh")
        x = nn.with_logical_constraint(x, ("batch", "length", "act_mlp"))
        x = nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)
        x = nn.Dense(
            width, kernel_init=_init(xavier, "mlp", "embed"), bias_init=_init(bias, "embed"), **kw
        )(x)
        return nn.Dropout(self.dropout_rate)(x, deterministic=deterministic)


class Encoder1DBlock(nn.Module):
    """Pre-LayerNorm block: x + Attn(LN(x)), then x + MLP(LN(x)); returns (x, None) for nn.scan.

    `drop_rate` is this block's stochastic-depth rate (a scalar, traced under scan) or None.
    """

    mlp_dim: int
    num_heads: int
    train: bool = False
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    gelu: str = "tanh"
    attention_impl: str | None = None
    pad_multiple: int | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, drop_rate=None):
        det = not self.train
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        y = _layer_norm(**kw)(x)
        y = MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            dropout_rate=self.attention_dropout_rate,
            implementation=self.attention_impl,
            pad_multiple=self.pad_multiple,
            **kw,
        )(y, deterministic=det)
        y = nn.Dropout(self.dropout_rate)(y, deterministic=det)
        x = x + self._drop_path(y, drop_rate)
        x = nn.with_logical_constraint(x, ("batch", "length", "act_embed"))
        y = _layer_norm(**kw)(x)
        y = MlpBlock(self.mlp_dim, self.dropout_rate, self.gelu, **kw)(y, deterministic=det)
        x = x + self._drop_path(y, drop_rate)
        return nn.with_logical_constraint(x, ("batch", "length", "act_embed")), None

    def _drop_path(self, y, rate):
        return y if rate is None or not self.train else drop_path(self, y, rate)


class Encoder(nn.Module):
    """Position embedding (if learned) + dropout + `num_layers` blocks + `encoder_norm`."""

    num_layers: int
    mlp_dim: int
    num_heads: int
    learned_posemb: bool = True
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    stochastic_depth: float = 0.0
    gelu: str = "tanh"
    scan: bool = False
    remat_policy: str = "none"
    attention_impl: str | None = None
    pad_multiple: int | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x, *, train: bool):
        if self.learned_posemb:
            x = AddPositionEmbs(param_dtype=self.param_dtype, name="posembed_input")(x)
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        block = Encoder1DBlock
        if self.remat_policy != "none":
            policy = _REMAT_POLICIES[self.remat_policy]
            block = nn.remat(block, policy=policy, prevent_cse=not self.scan)
        kw = dict(
            mlp_dim=self.mlp_dim,
            num_heads=self.num_heads,
            train=train,
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            gelu=self.gelu,
            attention_impl=self.attention_impl,
            pad_multiple=self.pad_multiple,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        rates = self._drop_rates()
        if self.scan:
            block = nn.scan(
                block,
                variable_axes={"params": 0, "intermediates": 0, "attention": 0},
                split_rngs={"params": True, "dropout": True},
                length=self.num_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )
            rates = None if rates is None else jnp.asarray(rates, jnp.float32)
            x, _ = block(name="encoderblock", **kw)(x, rates)
        else:
            for i in range(self.num_layers):
                rate = None if rates is None else rates[i]
                x, _ = block(name=f"encoderblock_{i}", **kw)(x, rate)
        return _layer_norm("encoder_norm", dtype=self.dtype, param_dtype=self.param_dtype)(x)

    def _drop_rates(self):
        if not self.stochastic_depth:
            return None
        step = self.stochastic_depth / max(self.num_layers - 1, 1)
        return [step * i for i in range(self.num_layers)]


class MAPHead(nn.Module):
    """Multihead attention pooling (big_vision): a learned `probe` attends over all tokens."""

    num_heads: int
    mlp_dim: int
    gelu: str = "tanh"
    attention_impl: str | None = None
    pad_multiple: int | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        init = _init(nn.initializers.xavier_uniform(), None, None, "embed")
        probe = self.param("probe", init, (1, 1, x.shape[-1]), self.param_dtype)
        probe = jnp.tile(probe.astype(x.dtype), (x.shape[0], 1, 1))
        x = MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            implementation=self.attention_impl,
            pad_multiple=self.pad_multiple,
            **kw,
        )(probe, x)
        y = _layer_norm(**kw)(x)
        x = x + MlpBlock(self.mlp_dim, gelu=self.gelu, **kw)(y, deterministic=True)
        return x[:, 0]


class VisionTransformer(nn.Module):
    """ViT classifier; a hybrid when `resnet_units` is set (ResNet trunk, then patch-1 embedding).

    Learned position embeddings cover the class token too (reference layout, [1, 1+N, D]); fixed
    sincos2d embeddings are added to the patch tokens only, before the class token is prepended
    (big_vision). Returns float32 logits, or the pooled pre-logit features when `num_classes` is
    0/None; those features are also sown as `intermediates/pre_logits/features`.
    """

    num_classes: int | None
    patch_size: int
    hidden_size: int
    num_layers: int
    mlp_dim: int
    num_heads: int
    classifier: str = "token"
    representation_size: int | None = None
    posemb: str = "learn"
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    stochastic_depth: float = 0.0
    gelu: str = "tanh"
    scan: bool = False
    remat_policy: str = "none"
    attention_impl: str | None = None
    pad_multiple: int | None = None
    resnet_units: tuple[int, ...] | None = None
    resnet_width: int = 64
    resnet_stem: str = "bit"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool = False):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        x = jnp.asarray(images, self.dtype)
        if self.resnet_units is not None:
            x = resnet.resnet_trunk(
                x, width=self.resnet_width, units=self.resnet_units, stem=self.resnet_stem, **kw
            )
        x = self._tokens(x)
        x = Encoder(
            num_layers=self.num_layers,
            mlp_dim=self.mlp_dim,
            num_heads=self.num_heads,
            learned_posemb=self.posemb == "learn",
            dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            stochastic_depth=self.stochastic_depth,
            gelu=self.gelu,
            scan=self.scan,
            remat_policy=self.remat_policy,
            attention_impl=self.attention_impl,
            pad_multiple=self.pad_multiple,
            name="Transformer",
            **kw,
        )(x, train=train)
        x = self._pool(x)
        x = resnet.PreLogits(self.representation_size, name="pre_logits", **kw)(x)
        if self.num_classes:
            x = nn.Dense(
                self.num_classes,
                kernel_init=_init(nn.initializers.zeros, "embed", "classes"),
                bias_init=_init(nn.initializers.zeros, "classes"),
                name="head",
                **kw,
            )(x)
        return jnp.asarray(x, jnp.float32)

    def _tokens(self, x):
        """Patch embedding → [B, N, D] (+ sincos2d) (+ class token)."""
        p = self.patch_size
        x = nn.Conv(
            self.hidden_size,
            kernel_size=(p, p),
            strides=(p, p),
            padding="VALID",
            kernel_init=_init(nn.initializers.lecun_normal(), "patch", "patch", "patch", "embed"),
            bias_init=_init(nn.initializers.zeros, "embed"),
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name="embedding",
        )(x)
        b, h, w, d = x.shape
        x = jnp.reshape(x, (b, h * w, d))
        if self.posemb == "sincos2d":
            x = x + jnp.asarray(posemb_sincos2d(h, w, d), x.dtype)
        if self.classifier == "token":
            init = _init(nn.initializers.zeros, None, None, "embed")
            cls = self.param("cls", init, (1, 1, d), self.param_dtype)
            x = jnp.concatenate([jnp.tile(cls.astype(x.dtype), (b, 1, 1)), x], axis=1)
        return x

    def _pool(self, x):
        if self.classifier == "token":
            return x[:, 0]
        if self.classifier == "gap":
            return jnp.mean(x, axis=1)
        if self.classifier == "map":
            return MAPHead(
                num_heads=self.num_heads,
                mlp_dim=self.mlp_dim,
                gelu=self.gelu,
                attention_impl=self.attention_impl,
                pad_multiple=self.pad_multiple,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
            )(x)
        raise errors.UserError(f"unknown classifier {self.classifier!r} (token | gap | map)")
