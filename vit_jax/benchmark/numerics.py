"""Attention numerics: fused / padded paths against a float32 reference (features and grads)."""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from vit_jax.benchmark.config import uses_cudnn_attention
from vit_jax.benchmark.runs import rbg_key

DEFAULT_VARIANTS = (
    ("xla", "bfloat16", "xla", None),
    ("xla_pad64", "bfloat16", "xla", 64),
    ("cudnn_pad64", "bfloat16", "cudnn", 64),
    ("cudnn_pad2", "bfloat16", "cudnn", 2),
    ("cudnn_nopad", "bfloat16", "cudnn", 1),  # 197 tokens: cuDNN may reject an odd length.
)


def attention_numerics(
    *,
    model: str = "B/16",
    batch: int = 4,
    image_size: int = 224,
    num_layers: int | None = 2,
    variants: Iterable[tuple[str, str, str, int | None]] = DEFAULT_VARIANTS,
    seed: int = 0,
    on_record: Callable[[dict], None] | None = None,
    compiler_options: dict | None = None,
) -> list[dict]:
    """Pooled features and parameter gradients of attention variants vs a float32 reference.

    `variants`: (name, dtype, attention, pad_multiple). Every variant shares one set of random
    parameters (the attention paths have identical parameter trees) and fresh random inputs; the
    reference is XLA attention, float32, highest matmul precision, unpadded. Errors are relative
    L2 norms over all features / all gradients, against the reference and against the XLA,
    unpadded variant of the same dtype. `num_layers` truncates the model (the attention numerics
    do not depend on depth; compiling is faster). `compiler_options` go to every XLA compile.
    """
    base, inputs = _setup(model, batch=batch, image_size=image_size, layers=num_layers, seed=seed)

    def evaluate(module, precision=None):
        return _evaluate(module, inputs, precision=precision, compiler_options=compiler_options)

    ref = evaluate(base.clone(dtype=jnp.float32, attention_impl="xla"), precision="highest")
    baselines, records = {}, []
    for name, dtype, attention, pad in variants:
        record = {"kind": "check", "variant": name, "model": model, "dtype": dtype}
        record.update(attention=attention, pad_multiple=pad, num_layers=num_layers, batch=batch)
        try:
            module = base.clone(dtype=jnp.dtype(dtype), attention_impl=attention, pad_multiple=pad)
            features, grads, in_hlo = evaluate(module)
            if attention == "xla" and pad is None:
                baselines[dtype] = (features, grads)
            record.update(_errors(features, grads, ref, baselines.get(dtype)))
            record.update(_verdict(record, in_hlo=in_hlo), status="ok")
        except Exception as e:  # noqa: BLE001 - an unsupported variant is a result, not a crash.
            traceback.print_exc(file=sys.stderr)
            record.update(status="error", ok=False, error=f"{type(e).__name__}: {str(e)[:300]}")
        records.append(record)
        if on_record:
            on_record(record)  # Now: a hard crash in a later variant keeps this one.
    return records


def _setup(model: str, *, batch: int, image_size: int, layers: int | None, seed: int):
    """(model, (params, images, projection)): random inputs and perturbed random parameters."""
    import flax.linen as nn  # Deferred with the models: `import vit_jax.benchmark` stays light.

    from vit_jax import models

    base = models.create(model, num_classes=0, dropout_rate=0.0)
    if layers:
        base = base.clone(num_layers=layers)
    rs = np.random.default_rng(seed)
    images = jnp.asarray(rs.standard_normal((batch, image_size, image_size, 3), np.float32))
    proj = jnp.asarray(rs.standard_normal((batch, base.hidden_size), np.float32))
    init = jax.jit(lambda k: base.init(k, images[:1], train=False)["params"])
    params = nn.unbox(init(rbg_key(seed)))
    # Perturb every parameter: zero-initialised biases, class token and head would otherwise
    # leave parts of the computation (and their gradients) untested.
    params = jax.tree.map(
        lambda p: p + 0.02 * rs.standard_normal(p.shape).astype(np.float32), params
    )
    return base, (params, images, proj)


def _evaluate(module, inputs, *, precision, compiler_options):
    """(features, flat parameter gradients, cuDNN attention in the program) of one module."""

    def fwd_bwd(p, x, w):
        def loss(q):
            features = module.apply({"params": q}, x, train=False).astype(jnp.float32)
            return jnp.sum(features * w), features

        (_, features), grads = jax.value_and_grad(loss, has_aux=True)(p)
        return features, grads

    with jax.default_matmul_precision(precision) if precision else contextlib.nullcontext():
        lowered = jax.jit(fwd_bwd).lower(*inputs)
        compiled = lowered.compile(compiler_options=compiler_options)
    features, grads = compiled(*inputs)
    flat = jnp.concatenate([g.ravel() for g in jax.tree.leaves(grads)])
    return np.asarray(features), np.asarray(flat), uses_cudnn_attention(lowered, compiled)


def _verdict(record: dict, *, in_hlo: bool) -> dict:
    """Within the dtype's tolerance, finite, and (for cuDNN) really cuDNN in the program."""
    tol = CHECK_TOLERANCE[jnp.dtype(record["dtype"]).itemsize == 2]
    ok = (
        record["finite"]
        and record["features_rel_err"] <= tol[0]
        and record["grads_rel_err"] <= tol[1]
        and (record["attention"] != "cudnn" or in_hlo)
    )
    return dict(cudnn_attention_in_hlo=in_hlo, tolerance=tol, ok=bool(ok))


# (features, grads) relative-error bounds against the float32 reference: 32-bit, 16-bit compute.
CHECK_TOLERANCE = {False: (1e-4, 1e-4), True: (3e-2, 5e-2)}


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def _errors(features, grads, ref, baseline) -> dict:
    out = {
        "finite": bool(np.isfinite(features).all() and np.isfinite(grads).all()),
        "features_rel_err": _rel(features, ref[0]),
        "grads_rel_err": _rel(grads, ref[1]),
    }
    if baseline is not None:
        out["features_rel_err_vs_xla"] = _rel(features, baseline[0])
        out["grads_rel_err_vs_xla"] = _rel(grads, baseline[1])
    return out
