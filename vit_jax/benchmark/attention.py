"""Attention core alone (forward + backward): what the sequence padding for cuDNN costs.

The model pads q/k/v to the cuDNN-friendly length and slices the output back in every layer
(`vit_jax.models.attention.fused_attention`). 'cudnn_prepadded' times the fused kernel on inputs
already padded once (what padding the whole token sequence once, before the encoder, would
leave per layer), so `cudnn_pad64 − cudnn_prepadded` is the per-layer cost of the copies, and
× layers its share of a train step. Same shapes as a B/16 layer at the benchmark's batch.
"""

from __future__ import annotations

import statistics
import sys
import traceback
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.benchmark.timing import measure


def _variants(tokens: int) -> dict[str, tuple[Callable, int]]:
    """name → (attention fn on [B, T, H, D] arrays, the length T its inputs have)."""
    from vit_jax.models.attention import fused_attention

    padded = tokens + (-tokens % 64)

    def prepadded(q, k, v):
        lengths = jnp.full((q.shape[0],), tokens, jnp.int32)
        return jax.nn.dot_product_attention(
            q,
            k,
            v,
            query_seq_lengths=lengths,
            key_value_seq_lengths=lengths,
            implementation="cudnn",
        )

    return {
        "xla": (lambda q, k, v: fused_attention(q, k, v, implementation="xla"), tokens),
        "cudnn_pad64": (
            lambda q, k, v: fused_attention(q, k, v, implementation="cudnn", pad_multiple=64),
            tokens,
        ),
        "cudnn_pad2": (
            lambda q, k, v: fused_attention(q, k, v, implementation="cudnn", pad_multiple=2),
            tokens,
        ),
        "cudnn_prepadded": (prepadded, padded),
    }


def attention_timings(
    *,
    batch: int = 256,
    tokens: int = 197,
    heads: int = 12,
    head_dim: int = 64,
    dtype: str = "bfloat16",
    steps: int = 20,
    repeats: int = 3,
    on_record: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Milliseconds per forward + backward of each variant; failures are records, not raises."""
    rs = np.random.default_rng(0)
    records = []
    for name, (fn, length) in _variants(tokens).items():
        record = {"kind": "attention", "variant": name, "batch": batch, "tokens": tokens}
        record.update(length=length, heads=heads, head_dim=head_dim, dtype=dtype)
        try:
            shape = (batch, length, heads, head_dim)
            q, k, v, g = (jnp.asarray(rs.standard_normal(shape), jnp.dtype(dtype)) for _ in "qkvg")

            def fwd_bwd(q, k, v, g, fn=fn):
                out, vjp = jax.vjp(fn, q, k, v)
                return out, vjp(g)

            compiled = jax.jit(fwd_bwd).lower(q, k, v, g).compile()
            timing = measure(
                lambda c, compiled=compiled, args=(q, k, v, g): (c, compiled(*args)),
                None,
                steps=steps,
                repeats=repeats,
                warmup=2,
            )
            ms = statistics.median(timing["times_s"]) / timing["steps"] * 1e3
            record.update(ms=ms, status="ok")
        except Exception as e:  # noqa: BLE001 - an unsupported variant is a result.
            traceback.print_exc(file=sys.stderr)
            record.update(status="error", error=f"{type(e).__name__}: {str(e)[:300]}")
        records.append(record)
        if on_record:
            on_record(record)
    return records
