"""Train-step and inference throughput of the ViT models on synthetic, device-resident data.

    python -m vit_jax.benchmark --model=B/16 --batch=256 --mode=train --dtype=bfloat16 --json=r.json

Prints a table and writes one JSON object per run (JSON Lines; a single run is plain JSON) with
`images_per_sec`, `tflops`, `mfu`, `compile_s`, memory and the exact settings. Comma lists sweep
(`--scan=false,true`, `--batch=64,256`) in one process. `--mode=check` compares attention paths
(cuDNN / XLA, padded / unpadded) against a float32 reference; `--mode=peak` times the matmul peak;
`--mode=attention` times the attention core alone (what per-layer padding costs).

Why it is built this way:
- It times the codebase's own train step (`steps.make_train_step`: jit, explicit shardings,
  donated state, the paper's Adam recipe) on one device, so the number is what training gets
  minus the input pipeline. The batch is made on the device once; nothing crosses to the host.
- Compilation is timed on its own (`lower().compile()`, tracing included) and the compiled
  executable is then called directly, so no retrace or recompile can hide in the timed loop.
- A timed repeat dispatches exactly `steps` steps, then blocks on the outputs of those steps only
  (train: every step's metrics and the last state, which depends on all earlier steps — earlier
  states are donated; inference: every step's logits). img/s = batch × steps / seconds; the
  median repeat is reported. Warm-up steps are blocked on before the clock starts.
- MFU = achieved model FLOP/s ÷ an N×N matmul peak measured on the same device and dtype, not a
  datasheet number. Model FLOPs come from `vit_jax.flops.macs`: 2 × MACs per image forward, 3 ×
  that for training; work added by attention padding or remat is not counted (the usual MFU).
- Memory: the program's own footprint from `memory_analysis` (arguments + outputs − donated +
  temporaries), per run, and the allocator's peak from `memory_stats` (GPU), which is per process.
- The models (and through them ml_collections) are imported lazily, so `import vit_jax.benchmark`
  works where only jax/flax/optax are installed.

One plan, one runner, one report: `plan` (what is measured: the CLI's sweep of list flags and the
GPU sweep's goals, ablations and estimates), `runner` (plan items under a deadline, in this
process or one process per phase), `report` (tables, log lines, a sweep's summary), `runs` (one
configuration built, compiled and timed), `cli` (the command line), `sweep` (the GPU sweep's
phases, `python -m vit_jax.benchmark.sweep`). The GPU sweep lives here, not beside
`experiments/`: it is a plan of this package's runs, made of this package's plan, runner and
report, and must run where only the package and jax/flax/optax are installed (the GPU image);
`experiments/gpu_bench.sh` is only its one-command launcher there. `reference` runs the
side-by-side comparison with the original vit_jax.
"""

from vit_jax.benchmark import plan
from vit_jax.benchmark.cli import main, parse_args
from vit_jax.benchmark.config import BenchConfig, resolve_attention
from vit_jax.benchmark.numerics import attention_numerics
from vit_jax.benchmark.report import check_table, table
from vit_jax.benchmark.runner import run_many
from vit_jax.benchmark.runs import build_model, flops_per_image, run
from vit_jax.benchmark.timing import matmul_peak, measure, timed_loop

__all__ = [
    "BenchConfig",
    "attention_numerics",
    "build_model",
    "check_table",
    "flops_per_image",
    "main",
    "matmul_peak",
    "measure",
    "parse_args",
    "plan",
    "resolve_attention",
    "run",
    "run_many",
    "table",
    "timed_loop",
]
