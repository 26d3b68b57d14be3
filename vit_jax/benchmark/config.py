"""What one benchmark run measures: `BenchConfig`, and the choices resolved from it."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

MODES = ("train", "inference")
ATTENTION = ("auto", "xla", "cudnn")
REMAT = ("none", "full", "dots", "dots_no_batch")
CUDNN_HLO_MARKER = "__cudnn$fmha"  # Custom-call targets of cuDNN fused attention in the HLO.


def uses_cudnn_attention(lowered, compiled) -> bool:
    """Whether the program calls cuDNN fused attention: in the HLO XLA compiled, or — should a
    newer XLA rename the call while compiling it — in the program JAX lowered (it compiled, so
    XLA took it)."""
    for stage in (compiled, lowered):
        try:
            if CUDNN_HLO_MARKER in (stage.as_text() or ""):
                return True
        except Exception:  # noqa: BLE001 - as_text is best effort on some backends.
            pass
    return False


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """One benchmark run. `param_dtype=None`: float32 master weights for training, the compute
    dtype for inference. `attention='auto'`: cuDNN on GPU with 16-bit compute, else XLA.
    `target_s > 0` picks the steps per repeat so that a repeat lasts about that long (the count
    is still exact and reported); `xla_options` are per-compile XLA debug options."""

    model: str = "B/16"
    batch: int = 256
    mode: str = "train"
    dtype: str = "bfloat16"
    param_dtype: str | None = None
    image_size: int = 224
    num_classes: int = 1000
    scan: bool = False
    remat: str = "none"
    attention: str = "auto"
    pad_multiple: int | None = None
    dropout: float = 0.0
    optimizer: str = "adam"
    steps: int = 10
    repeats: int = 5
    warmup: int = 3
    target_s: float = 0.0
    compile_only: bool = False
    xla_options: dict | None = None
    label: str = ""
    group: str = ""
    seed: int = 0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"mode={self.mode!r}: must be one of {MODES}")
        if self.attention not in ATTENTION:
            raise ValueError(f"attention={self.attention!r}: must be one of {ATTENTION}")
        if self.remat not in REMAT:
            raise ValueError(f"remat={self.remat!r}: must be one of {REMAT}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"optimizer={self.optimizer!r}: must be adam or sgd")
        if min(self.batch, self.steps, self.repeats) < 1 or self.warmup < 0:
            raise ValueError("batch, steps and repeats must be >= 1, warmup >= 0")


def resolve_attention(attention: str, dtype: str) -> str:
    """'auto': 'cudnn' on GPU with 16-bit compute (what cuDNN flash attention takes), else 'xla'."""
    if attention != "auto":
        return attention
    sixteen_bit = jnp.dtype(dtype).itemsize == 2
    return "cudnn" if jax.default_backend() == "gpu" and sixteen_bit else "xla"


def param_dtype_of(cfg: BenchConfig) -> str:
    if cfg.param_dtype:
        return cfg.param_dtype
    return "float32" if cfg.mode == "train" else cfg.dtype


def describe(cfg: BenchConfig) -> dict:
    """The settings of a run as they were actually used (auto choices resolved)."""
    d = dataclasses.asdict(cfg)
    d.update(
        attention=resolve_attention(cfg.attention, cfg.dtype),
        param_dtype=param_dtype_of(cfg),
    )
    return d
