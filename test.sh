#!/usr/bin/env bash
# Sets up .venv (scripts/bootstrap.sh), lints, and runs the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh test
.venv/bin/ruff check vit_jax configs experiments tests notebooks
exec .venv/bin/python -m pytest -q tests "$@"
