#!/usr/bin/env bash
# Prepares what vit_jax needs on a fresh Debian/Ubuntu machine: the offline Fashion-MNIST files
# (Debian's dataset-fashion-mnist) and a virtual environment in .venv with the package installed
# editable. `scripts/bootstrap.sh [main|test]`: main (./run.sh) installs the `train` extra only;
# test (./test.sh) adds the `test` extra (torch, timm, transformers, pytest: several GB more).
# Idempotent: a stamp per set-up and setup.py; re-running only installs when one is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:-main}" in
  main) extras="train" ;;
  test) extras="train,colab,test" ;;
  *) echo "usage: scripts/bootstrap.sh [main|test]" >&2; exit 2 ;;
esac
job=${1:-main}

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_install() {
  command -v apt-get >/dev/null || return 1
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { as_root apt-get update -q >/dev/null 2>&1 &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; }
}
# pip, quiet: drops the harmless "Location ... is ignored" lines that a machine-wide pip config
# listing absent local indexes prints for every package, and setuptools' warning about editable
# installs (PYTHONWARNINGS reaches pip's build subprocess). pip's exit status is kept (pipefail).
pip_quiet() {
  PYTHONWARNINGS=ignore .venv/bin/python -m pip -q "$@" 2>&1 |
    { grep -v "is ignored: it is neither a file nor a directory" || true; }
}

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  echo "bootstrap: installing Debian's dataset-fashion-mnist (offline Fashion-MNIST)"
  apt_install dataset-fashion-mnist ||
    echo "bootstrap: warning: could not install dataset-fashion-mnist; TFDS will download instead" >&2
fi

PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "vit_jax needs Python >= 3.11"'
hash=$(sha1sum setup.py | cut -c1-12)
stamp=".venv/.installed-$job-$hash"
# The test set-up includes the main one.
if [ ! -f "$stamp" ] && ! { [ "$job" = main ] && [ -f ".venv/.installed-test-$hash" ]; }; then
  if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv 2>/dev/null || { apt_install python3-venv && rm -rf .venv && "$PY" -m venv .venv; }
  fi
  echo "bootstrap: installing vit_jax[$extras] into .venv (first time: a few minutes)"
  pip_quiet install --upgrade pip
  pip_quiet install -e ".[$extras]"
  find .venv -maxdepth 1 -name '.installed-*' ! -name "*-$hash" -delete  # setup.py changed.
  touch "$stamp"
fi
