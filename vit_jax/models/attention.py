"""Multi-head dot-product attention for the ViT encoder and the MAP pooling head.

Parameters are named and shaped as Flax's own `nn.MultiHeadDotProductAttention` (the reference
vit_jax models use it): `query/key/value` kernels (D, heads, head_dim) with biases
(heads, head_dim), `out` kernel (heads, head_dim, D). The class name is kept so Linen auto-names it
`MultiHeadDotProductAttention_0`, as in published checkpoints.

The softmax core runs through `jax.nn.dot_product_attention`, so `implementation='cudnn'` selects
the fused GPU kernel. cuDNN rejects odd sequence lengths (197 for B/16 with a class token), so the
sequence is padded to `pad_multiple` and the true lengths are passed, which masks padded keys; the
padded query rows are sliced off. The explicit (einsum + softmax) path is used when the attention
weights are wanted (`mutable=['attention']`) or attention dropout is active, since the fused call
neither returns weights nor applies dropout.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vit_jax import errors

Dtype = Any
CUDNN_PAD_MULTIPLE = 64


class HeadsDense(nn.Module):
    """Dense layer whose kernel keeps the head axes: contracts the last `num_in` input dims.

    In-projection: (D,) → (heads, head_dim), kernel (D, heads, head_dim). Out-projection:
    (heads, head_dim) → (D,), kernel (heads, head_dim, D). Xavier-uniform over fan-in = the input
    dims and fan-out = the output dims, which is the distribution of Flax's DenseGeneral on the
    flattened kernel. (Not DenseGeneral itself: it builds a 2-D kernel and reshapes it inside the
    initializer, and Flax re-traces that initializer during `apply` to check shapes, which applies
    the 3-D logical constraint to the 2-D array and fails under a mesh.)
    """

    features: tuple[int, ...]
    num_in: int
    axes: tuple[str | None, ...]  # Logical names of the kernel: input dims, then output dims.
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        shape = x.shape[x.ndim - self.num_in :] + tuple(self.features)
        ins, outs = tuple(range(self.num_in)), tuple(range(self.num_in, len(shape)))
        xavier = nn.initializers.xavier_uniform(in_axis=ins, out_axis=outs)
        kernel = self.param(
            "kernel", nn.with_logical_partitioning(xavier, self.axes), shape, self.param_dtype
        )
        bias = self.param(
            "bias",
            nn.with_logical_partitioning(nn.initializers.zeros, self.axes[self.num_in :]),
            tuple(self.features),
            self.param_dtype,
        )
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        contract = (tuple(range(x.ndim - self.num_in, x.ndim)), ins)
        return jax.lax.dot_general(x, kernel, (contract, ((), ()))) + bias


def fused_attention(q, k, v, *, implementation=None, pad_multiple=None):
    """softmax(q·kᵀ/√d)·v on [B, L, heads, head_dim], padding L up to `pad_multiple` if given.

    `implementation`: None/'xla' (XLA on any backend) or 'cudnn' (fused flash attention, GPU).
    """
    impl = None if implementation in (None, "xla") else implementation
    q_len, kv_len = q.shape[1], k.shape[1]
    if not pad_multiple or (q_len % pad_multiple == 0 and kv_len % pad_multiple == 0):
        return jax.nn.dot_product_attention(q, k, v, implementation=impl)
    batch = q.shape[0]
    q = _pad_length(q, pad_multiple)
    k = _pad_length(k, pad_multiple)
    v = _pad_length(v, pad_multiple)
    out = jax.nn.dot_product_attention(
        q,
        k,
        v,
        query_seq_lengths=jnp.full((batch,), q_len, jnp.int32),
        key_value_seq_lengths=jnp.full((batch,), kv_len, jnp.int32),
        implementation=impl,
    )
    return out[:, :q_len]


def _pad_length(x, multiple):
    pad = -x.shape[1] % multiple
    return jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0)))


def attention_weights(q, k):
    """Softmax attention weights [B, heads, q, k], computed and returned in float32."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
    logits = logits / np.sqrt(q.shape[-1]).astype(np.float32)
    return jax.nn.softmax(logits, axis=-1)


class MultiHeadDotProductAttention(nn.Module):
    """Multi-head attention; self-attention when `inputs_kv` is None.

    Attributes:
      num_heads: heads; the input width must divide by it.
      dropout_rate: dropout on the attention weights (training only).
      implementation: None/'xla' or 'cudnn' (see `fused_attention`).
      pad_multiple: sequence padding multiple for the fused call; None means 64 for 'cudnn' and no
        padding otherwise. Set it with 'xla' to exercise the padded path on CPU.
    """

    num_heads: int
    dropout_rate: float = 0.0
    implementation: str | None = None
    pad_multiple: int | None = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, inputs_q, inputs_kv=None, *, deterministic: bool = True):
        inputs_kv = inputs_q if inputs_kv is None else inputs_kv
        width = inputs_q.shape[-1]
        if width % self.num_heads:
            raise errors.UserError(f"width {width} does not divide into {self.num_heads} heads")
        head_dim = width // self.num_heads
        dtypes = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        qkv = dict(features=(self.num_heads, head_dim), num_in=1, axes=("embed", "heads", "kv"))
        q = HeadsDense(name="query", **qkv, **dtypes)(inputs_q)
        k = HeadsDense(name="key", **qkv, **dtypes)(inputs_kv)
        v = HeadsDense(name="value", **qkv, **dtypes)(inputs_kv)

        dropout = self.dropout_rate > 0 and not deterministic
        # `init` makes every collection mutable; weights are only wanted on request in `apply`.
        wanted = self.is_mutable_collection("attention") and not self.is_initializing()
        if wanted or dropout:
            weights = attention_weights(q, k)
            self.sow("attention", "weights", weights)
            weights = nn.Dropout(self.dropout_rate, broadcast_dims=())(
                weights, deterministic=deterministic
            )
            out = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(v.dtype), v)
        else:
            out = fused_attention(
                q, k, v, implementation=self.implementation, pad_multiple=self._pad_multiple()
            )
        out_axes = ("heads", "kv", "embed")
        return HeadsDense(features=(width,), num_in=2, axes=out_axes, name="out", **dtypes)(out)

    def _pad_multiple(self):
        if self.pad_multiple is not None:
            return self.pad_multiple
        return CUDNN_PAD_MULTIPLE if self.implementation == "cudnn" else None
