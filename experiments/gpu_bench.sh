#!/usr/bin/env bash
# The one benchmark run for the GPU machine (see experiments/gpu_bench/__init__.py for the phases):
#   bash experiments/gpu_bench.sh            # GPU: ~8 minutes, results in $OUT (default ./bench_out)
#   bash experiments/gpu_bench.sh --smoke    # CPU dry run with tiny models, end to end
# Options: --budget=SECONDS (default 450; or BENCH_BUDGET_S). PYTHON picks the interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-1}"
export OUT="${OUT:-$PWD/bench_out}"
mkdir -p "$OUT"
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" -m experiments.gpu_bench "$@"
