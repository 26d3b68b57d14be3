#!/usr/bin/env bash
# Sets up .venv (scripts/bootstrap.sh) and runs the default job: a ViT trained on Fashion-MNIST from
# the offline Debian files. Extra arguments go to vit_jax.main, e.g. --config.total_steps=200.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
exec .venv/bin/python -m vit_jax.main --config=configs/fashion_mnist.py --workdir="${WORKDIR:-runs/fashion_mnist}" "$@"
