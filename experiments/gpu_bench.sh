#!/usr/bin/env bash
# The GPU sweep in one command (phases: see vit_jax/benchmark/sweep.py):
#   bash experiments/gpu_bench.sh            # GPU: ~8 minutes, results in $OUT (default ./bench_out)
#   bash experiments/gpu_bench.sh --smoke    # CPU dry run with tiny models, end to end
# Options: --budget=SECONDS (default 460; or BENCH_BUDGET_S), --phases=..., --dry_run (the plan
# with estimates, nothing run). PYTHON picks the interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"
export OUT="${OUT:-$PWD/bench_out}"
mkdir -p "$OUT"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" -m vit_jax.benchmark.sweep "$@"
