#!/usr/bin/env bash
# Sets up .venv (scripts/bootstrap.sh) and runs the default job: the scaling study of ViT vs ResNet
# vs hybrid on Fashion-MNIST (offline Debian files), 12 points two at a time, ~12-20 min on 2 CPUs.
# Extra arguments go to experiments.run, e.g. --smoke (3 points, ~2 min) or --only=ViT.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh main
exec .venv/bin/python -m experiments.run --sweep=experiments/sweeps/fmnist_scaling.py \
  --workdir="${WORKDIR:-runs/fmnist_scaling}" --parallel=2 "$@"
