"""The one benchmark run for the GPU machine: `bash experiments/gpu_bench.sh` from the repo root.

Phases, in priority order, each one `python -m vit_jax.benchmark` process (a crash loses one
phase, not the run; runs inside a phase share XLA's in-process autotuning results):
  check      bf16 matmul peak (8192³), and attention numerics on the B/16 geometry (197 tokens,
             2 layers): cuDNN vs XLA, padded vs unpadded, each against a float32 reference.
  train      the goals — B/16 b256, S/16 b512, L/16 b128 — with the expected-best settings
             (cuDNN attention if the check passed, unrolled layers, no remat), then the B/16
             ablations: layer scan, XLA attention, remat 'dots'.
  inference  img/s at batch 64 / 256 / 1024 for Ti, S, B, L at 224 (layer scan: fast compiles).
  extras     B/16 with XLA option sets (cuBLASLt, command buffers off, latency-hiding scheduler,
             Triton GEMMs off), cuDNN with even (198) instead of 64-multiple padding, B/16
             inference unrolled.
  rerun      S/16 and L/16 again with the B/16 winner, if an ablation or extra beat the guess.
Each run is skipped when its estimated compile + run time would overrun the budget (estimates
rescaled by the compiles measured so far); the inference phase's estimate is held back from the
train phase. Records stream to $OUT/results.jsonl as runs finish; $OUT/summary.md and
summary.json are rewritten after every phase, so a run cut off still leaves what finished.

Modules: `plan` (what is measured, settings, time estimates, decisions), `runner` (the phase
processes, deadlines, crash recovery), `report` (summary.md / summary.json), `main` (the phases
in order).

Flags: --smoke (tiny models on CPU, end to end); --budget=SECONDS (default 460, or BENCH_BUDGET_S);
--phases=train,inference (a subset, e.g. to finish what a first run had to skip).
"""

from experiments.gpu_bench.main import main

__all__ = ["main"]
