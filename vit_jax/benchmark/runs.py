"""Building, compiling and timing one configuration (`run`); the runner runs many."""

from __future__ import annotations

import os
import statistics
import time
import types

import jax
import jax.numpy as jnp

from vit_jax.benchmark.config import (
    BenchConfig,
    describe,
    param_dtype_of,
    resolve_attention,
    uses_cudnn_attention,
)
from vit_jax.benchmark.timing import measure


def flops_per_image(cfg: BenchConfig) -> float:
    """Model FLOPs per image: 2 × forward MACs, × 3 for a training step."""
    from vit_jax import flops

    macs = flops.macs(cfg.model, image_size=cfg.image_size, num_classes=cfg.num_classes)
    return 2.0 * macs * (3 if cfg.mode == "train" else 1)


def build_model(cfg: BenchConfig, *, num_classes: int | None = None):
    """The registry's model with the run's settings; `pad_multiple` set through `clone`."""
    from vit_jax import models

    model = models.create(
        cfg.model,
        num_classes=cfg.num_classes if num_classes is None else num_classes,
        dtype=cfg.dtype,
        param_dtype=param_dtype_of(cfg),
        scan=cfg.scan,
        remat_policy=cfg.remat,
        attention_impl=resolve_attention(cfg.attention, cfg.dtype),
        dropout_rate=cfg.dropout,
    )
    if cfg.pad_multiple is not None:
        model = model.clone(pad_multiple=cfg.pad_multiple)
    return model


def synthetic_batch(cfg: BenchConfig, *, sharding=None, channels: int = 3) -> dict:
    """Random images (in the compute dtype) and labels, generated on the device."""

    def make(key):
        k_image, k_label = jax.random.split(key)
        shape = (cfg.batch, cfg.image_size, cfg.image_size, channels)
        return {
            "image": jax.random.normal(k_image, shape, jnp.dtype(cfg.dtype)),
            "label": jax.random.randint(k_label, (cfg.batch,), 0, cfg.num_classes, jnp.int32),
        }

    return jax.jit(make, out_shardings=sharding)(rbg_key(cfg.seed + 1))


def rbg_key(seed: int):
    """An RBG key: XLA's RngBitGenerator compiles far faster than threefry (seconds on CPU) and
    is all that synthetic data and benchmark parameters need."""
    return jax.random.key(seed, impl="rbg")


def _optim_config(name: str):
    """The paper's recipes (as config_lib's defaults), without importing ml_collections."""
    return types.SimpleNamespace(
        name=name,
        lr=1e-3 if name == "adam" else 3e-2,
        b1=0.9,
        b2=0.999,
        momentum=0.9,
        weight_decay=0.1 if name == "adam" else 0.0,
        decay_rules=("kernel$",),
        schedule="cosine",
        warmup_steps=100,
        grad_clip_norm=1.0,
        freeze=(),
    )


def _compile(jitted, *args, xla_options=None):
    """(compiled, {compile_s, compile_cpu_s}) for trace + lower + compile.

    compile_cpu_s is the CPU time of this process (all threads) meanwhile: on a shared machine
    it barely moves with the load that makes the wall time drift.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    lowered = jitted.lower(*args)
    compiled = lowered.compile(compiler_options=xla_options or None)
    timing = {"compile_s": time.perf_counter() - wall, "compile_cpu_s": time.process_time() - cpu}
    timing["cudnn_attention_in_hlo"] = uses_cudnn_attention(lowered, compiled)
    return compiled, timing


def _memory(compiled) -> dict:
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it.
        m = None
    if m is None:
        return {}
    arg, out = m.argument_size_in_bytes, m.output_size_in_bytes
    alias, temp = m.alias_size_in_bytes, m.temp_size_in_bytes
    return {"program_bytes": int(arg + out - alias + temp), "temp_bytes": int(temp)}


def _device_peak_bytes():
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001
        stats = {}
    return stats.get("peak_bytes_in_use")


def _prepare_train(cfg: BenchConfig):
    from vit_jax import sharding, steps

    model = build_model(cfg)
    mesh = sharding.make_mesh((("data", 1),))
    train_config = types.SimpleNamespace(
        optim=_optim_config(cfg.optimizer),
        total_steps=100_000,
        sharding="dp",
        grad_accum_steps=1,
        loss="softmax_xent",
        label_smoothing=0.0,
    )
    with jax.set_mesh(mesh):
        shape = (cfg.batch, cfg.image_size, cfg.image_size, 3)
        placed, step = steps.setup(model, train_config, mesh=mesh, input_shape=shape)
        state = placed.init(rbg_key(cfg.seed))
        batch = synthetic_batch(cfg, sharding=sharding.batch_sharding(mesh))
        rng = jax.random.key(cfg.seed + 2)
        compiled, timing = _compile(step, state, batch, rng, xla_options=cfg.xla_options)
    return compiled, timing, (lambda s: compiled(s, batch, rng)), state


def _prepare_inference(cfg: BenchConfig):
    import flax.linen as nn

    model = build_model(cfg)
    dummy = jnp.zeros((1, cfg.image_size, cfg.image_size, 3), jnp.float32)
    params = jax.jit(lambda key: nn.unbox(model.init(key, dummy, train=False)["params"]))(
        rbg_key(cfg.seed)
    )
    images = synthetic_batch(cfg)["image"]
    forward = jax.jit(lambda p, x: model.apply({"params": p}, x, train=False))
    compiled, timing = _compile(forward, params, images, xla_options=cfg.xla_options)
    return compiled, timing, (lambda c: (c, compiled(params, images))), None


# ---------------------------------------------------------------------------------------------
# One run, many runs.


def run(cfg: BenchConfig, *, peak: dict | None = None) -> dict:
    """Compile and time one configuration; returns the JSON record (see module docstring)."""
    prepare = _prepare_train if cfg.mode == "train" else _prepare_inference
    compiled, compile_timing, step, carry = prepare(cfg)
    record = {
        "kind": cfg.mode,
        **describe(cfg),
        **compile_timing,
        "flops_per_image": flops_per_image(cfg),
        **_memory(compiled),
        **environment(),
    }
    if cfg.compile_only:
        return {**record, "status": "compiled"}
    timing = measure(
        step,
        carry,
        steps=cfg.steps,
        repeats=cfg.repeats,
        warmup=cfg.warmup,
        target_s=cfg.target_s,
    )
    seconds = statistics.median(timing["times_s"])
    images_per_sec = cfg.batch * timing["steps"] / seconds
    tflops = images_per_sec * record["flops_per_image"] / 1e12
    record.update(
        steps=timing["steps"],
        times_s=timing["times_s"],
        step_time_s=seconds / timing["steps"],
        images_per_sec=images_per_sec,
        images_per_sec_spread=[cfg.batch * timing["steps"] / t for t in timing["times_s"]],
        tflops=tflops,
        device_peak_bytes=_device_peak_bytes(),
        status="ok",
    )
    if peak:
        record.update(peak_tflops=peak["tflops"], peak_n=peak["n"], mfu=tflops / peak["tflops"])
    return record


def environment() -> dict:
    device = jax.local_devices()[0]
    return {
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "jax_version": jax.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
