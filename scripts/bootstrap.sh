#!/usr/bin/env bash
# Prepares everything vit_jax needs on a fresh Debian/Ubuntu machine: the offline Fashion-MNIST
# files (Debian's dataset-fashion-mnist) and a virtual environment in .venv with the package
# installed editable. Idempotent: re-running only reinstalls when setup.py changed.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_install() {
  command -v apt-get >/dev/null || return 1
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { as_root apt-get update -q >/dev/null 2>&1 &&
      as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1; }
}

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  echo "bootstrap: installing Debian's dataset-fashion-mnist (offline Fashion-MNIST)"
  apt_install dataset-fashion-mnist ||
    echo "bootstrap: warning: could not install dataset-fashion-mnist; TFDS will download instead" >&2
fi

PY=${PYTHON:-python3}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "vit_jax needs Python >= 3.11"' 
stamp=".venv/.installed-$(cat setup.py | sha1sum | cut -c1-12)"
if [ ! -f "$stamp" ]; then
  if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv 2>/dev/null || { apt_install python3-venv && rm -rf .venv && "$PY" -m venv .venv; }
  fi
  echo "bootstrap: installing vit_jax and its dependencies into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[test]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
