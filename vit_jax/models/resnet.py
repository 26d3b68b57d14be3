"""BiT-style ResNets: the paper's CNN baselines and the trunk of its hybrid models.

Weight-standardised convolutions + GroupNorm instead of BatchNorm (as BiT), because that transfers
better and needs no cross-device batch statistics. The unit is the post-activation bottleneck of
the reference vit_jax `models_resnet.py` (`conv1, gn1, conv2, gn2, conv3, gn3, conv_proj, gn_proj`,
stride on the 3×3 conv), so hybrid checkpoints load by name. (The published BiT classifier weights
are pre-activation ResNet-v2 with other names; they do not load into `ResNet` by name.)

`resnet_trunk` creates its layers in the *calling* module's scope: the hybrid ViT calls it from
its own compact `__call__`, which puts `conv_root`, `gn_root`, `block{i}` at the ViT's top level,
exactly as in the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
from jax import lax

from vit_jax import errors

Dtype = Any
_CONV_AXES = (None, None, "conv_in", "conv_out")
# stem: (first conv's kernel, its stride); see `resnet_trunk`.
STEMS = {"bit": (7, 2), "small": (3, 1), "conv4": (3, 2), "conv8": (3, 2)}
# Convolutional stems: the width multiplier of each 3×3/2 conv after the first (`conv_root2`, ...).
CONV_STEM_WIDENING = {"conv4": (1,), "conv8": (2, 4)}


def stem_downsampling(stem: str) -> int:
    """The stem's total stride: its first conv's, ×2 per further conv, ×2 for BiT's max-pool."""
    if stem not in STEMS:
        raise errors.UserError(f"unknown ResNet stem {stem!r}")
    return STEMS[stem][1] * 2 ** len(CONV_STEM_WIDENING.get(stem, ())) * (2 if stem == "bit" else 1)


def weight_standardize(w: jnp.ndarray, *, axis: Sequence[int], eps: float) -> jnp.ndarray:
    """Zero-mean, unit-std kernel per output channel (float32 statistics, original dtype out)."""
    w32 = jnp.asarray(w, jnp.float32)
    w32 = w32 - jnp.mean(w32, axis=axis, keepdims=True)
    std = jnp.sqrt(jnp.mean(w32 * w32, axis=axis, keepdims=True))
    return (w32 / (std + eps)).astype(w.dtype)


class GroupNorm(nn.Module):
    """GroupNorm over (H, W, channels-in-group), float32 statistics, `dtype` output.

    Same parameters (`scale`, `bias`) and maths as `nn.GroupNorm`, in fewer ops: ResNets have
    one per conv, and tracing the deep BiT models is dominated by them.
    """

    num_groups: int = 32
    epsilon: float = 1e-6
    scale_init: Any = nn.initializers.ones
    bias_init: Any = nn.initializers.zeros
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        shape, channels, groups = x.shape, x.shape[-1], self.num_groups
        if channels % groups:
            raise errors.UserError(f"{channels} channels do not divide into {groups} groups")
        scale = self.param("scale", self.scale_init, (channels,), self.param_dtype)
        bias = self.param("bias", self.bias_init, (channels,), self.param_dtype)
        y = jnp.asarray(x, jnp.float32).reshape(shape[:-1] + (groups, channels // groups))
        axes = tuple(range(1, y.ndim - 2)) + (y.ndim - 1,)
        y = y - jnp.mean(y, axes, keepdims=True)
        y = y * lax.rsqrt(jnp.mean(y * y, axes, keepdims=True) + self.epsilon)
        y = y.reshape(shape) * scale.astype(jnp.float32) + bias.astype(jnp.float32)
        return y.astype(self.dtype)


class StdConv(nn.Conv):
    """Convolution whose kernel is weight-standardised every time it is read."""

    def param(self, name, init_fn, *init_args, unbox=True, **init_kwargs):
        value = super().param(name, init_fn, *init_args, unbox=unbox, **init_kwargs)
        if name == "kernel":
            value = weight_standardize(value, axis=(0, 1, 2), eps=1e-5)
        return value


def std_conv(features, kernel, *, strides=1, name, dtype, param_dtype) -> StdConv:
    """A bias-free SAME-padded StdConv with ('conv_in', 'conv_out') channel axes."""
    return StdConv(
        features=features,
        kernel_size=(kernel, kernel),
        strides=(strides, strides),
        use_bias=False,
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), _CONV_AXES),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


def group_norm(channels, *, name, dtype, param_dtype, zero_scale=False) -> GroupNorm:
    """GroupNorm with 32 groups (BiT); fewer when the channels do not divide (tiny CNNs)."""
    scale_init = nn.initializers.zeros if zero_scale else nn.initializers.ones
    return GroupNorm(
        num_groups=math.gcd(32, channels),
        epsilon=1e-6,
        scale_init=nn.with_logical_partitioning(scale_init, ("norm",)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("norm",)),
        dtype=dtype,
        param_dtype=param_dtype,
        name=name,
    )


class ResidualUnit(nn.Module):
    """Bottleneck unit: 1×1 → 3×3 (strided) → 1×1 (4× wider); gn3 starts at zero (identity)."""

    features: int
    strides: int = 1
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        out = self.features * 4
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        residual = x
        if x.shape[-1] != out or self.strides != 1:
            residual = std_conv(out, 1, strides=self.strides, name="conv_proj", **kw)(x)
            residual = group_norm(out, name="gn_proj", **kw)(residual)
        y = std_conv(self.features, 1, name="conv1", **kw)(x)
        y = nn.relu(group_norm(self.features, name="gn1", **kw)(y))
        y = std_conv(self.features, 3, strides=self.strides, name="conv2", **kw)(y)
        y = nn.relu(group_norm(self.features, name="gn2", **kw)(y))
        y = std_conv(out, 1, name="conv3", **kw)(y)
        y = group_norm(out, name="gn3", zero_scale=True, **kw)(y)
        return nn.relu(residual + y)


class ResNetStage(nn.Module):
    """`num_units` bottleneck units `unit1..unitN`; only the first one strides."""

    num_units: int
    features: int
    first_stride: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(features=self.features, dtype=self.dtype, param_dtype=self.param_dtype)
        for i in range(self.num_units):
            stride = self.first_stride if i == 0 else 1
            x = ResidualUnit(strides=stride, name=f"unit{i + 1}", **kw)(x)
        return x


def resnet_trunk(x, *, width, units, stem, dtype, param_dtype):
    """Stem + stages, built in the calling module's scope (call from a compact method).

    stem='bit': 7×7/2 conv + 3×3/2 max-pool (ImageNet-size inputs; total stride 4·2^(stages-1)).
    stem='small': 3×3/1 conv, no pool (28×28 inputs; three stages give total stride 4).
    stem='conv4': two 3×3/2 convs (28×28 → 7×7): a convolutional stem (Xiao et al., 2021, "Early
      convolutions help transformers see better") costing about what a patch embedding does, which
      gives a ViT the CNN's locality where data are few; with no stages it is the whole trunk.
    stem='conv8': three 3×3/2 convs, widths ×1, ×2, ×4 (28×28 → 14 → 7 → 4×4, SAME padding): the
      same idea at patch-7 token counts; each conv doubles the width as it halves the side, so the
      last one already has a ViT's width.
    Stage i has bottleneck width `width·2^i` and output width `4·width·2^i`.
    """
    kw = dict(dtype=dtype, param_dtype=param_dtype)
    if stem not in STEMS:
        raise errors.UserError(f"unknown ResNet stem {stem!r}")
    kernel, stride = STEMS[stem]
    x = std_conv(width, kernel, strides=stride, name="conv_root", **kw)(x)
    x = nn.relu(group_norm(width, name="gn_root", **kw)(x))
    for i, mult in enumerate(CONV_STEM_WIDENING.get(stem, ())):
        x = std_conv(width * mult, 3, strides=2, name=f"conv_root{i + 2}", **kw)(x)
        x = nn.relu(group_norm(width * mult, name=f"gn_root{i + 2}", **kw)(x))
    if stem == "bit":
        x = nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding="SAME")
    for i, num_units in enumerate(units):
        x = ResNetStage(
            num_units=num_units,
            features=width * 2**i,
            first_stride=1 if i == 0 else 2,
            name=f"block{i + 1}",
            **kw,
        )(x)
    return x


class PreLogits(nn.Module):
    """The module named `pre_logits`: identity, or Dense + tanh with a representation layer.

    It exists (as the reference's IdentityLayer) to name the pooled features: they are sown as
    `intermediates/pre_logits/features` (a 1-tuple), for every family. A module, not a sow at the
    top level, because the representation layer's parameters already own the name `pre_logits`.
    """

    representation_size: int | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        if self.representation_size:
            kernel_init = nn.initializers.lecun_normal()
            shape = (x.shape[-1], self.representation_size)
            kernel = self.param(
                "kernel",
                nn.with_logical_partitioning(kernel_init, ("embed", "mlp")),
                shape,
                self.param_dtype,
            )
            bias = self.param(
                "bias",
                nn.with_logical_partitioning(nn.initializers.zeros, ("mlp",)),
                (self.representation_size,),
                self.param_dtype,
            )
            x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
            x = jnp.tanh(jnp.dot(x, kernel) + bias)
        self.sow("intermediates", "features", x)
        return x


class ResNet(nn.Module):
    """BiT-style ResNet classifier: trunk → global average pool → zero-initialised `head`.

    `num_classes=0` returns the pooled features. `train` is accepted for a uniform call signature
    (the model has no dropout or batch statistics).
    """

    num_classes: int | None
    width: int
    units: tuple[int, ...]
    stem: str = "bit"
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, images, *, train: bool = False):
        del train
        x = jnp.asarray(images, self.dtype)
        x = resnet_trunk(
            x,
            width=self.width,
            units=self.units,
            stem=self.stem,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        x = jnp.mean(x, axis=(1, 2))
        x = PreLogits(dtype=self.dtype, param_dtype=self.param_dtype, name="pre_logits")(x)
        if self.num_classes:
            x = nn.Dense(
                self.num_classes,
                kernel_init=nn.with_logical_partitioning(
                    nn.initializers.zeros, ("embed", "classes")
                ),
                bias_init=nn.with_logical_partitioning(nn.initializers.zeros, ("classes",)),
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name="head",
            )(x)
        return jnp.asarray(x, jnp.float32)
