#!/usr/bin/env bash
# The full study's best-ViT point(s) on one GPU, through the real runner and engine, with the
# numpy-only input path (data.source=arrays): the GPU image has no TensorFlow/TFDS.
#
# Prepare here once (both paths are git-ignored through .git/info/exclude; see the device README):
#   mkdir -p .data && cp /usr/share/datasets/fashion-mnist/*.gz .data/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 -d .whl ml_collections
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --platform manylinux2014_x86_64 -d .whl scikit-learn   # only its digits file is read
# Then, on the device: run(command="bash experiments/gpu_fmnist_full.sh", carry=[".data", ".whl"])
# Env: ONLY (regex of point names, default the 48k-step XS/4), SWEEP_ARGS (e.g. steps=2000 for a
# rehearsal), OUT (results: results.jsonl, summary.md, the points' metrics and logs, flat).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
OUT="${OUT:-runs/gpu_fmnist_full}"
PYTHON="${PYTHON:-python3}"
has() { "$PYTHON" -c "import importlib.util as u, sys; sys.exit(not u.find_spec('$1'))"; }
if [ -d .whl ] && ! { has ml_collections && has sklearn; }; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
SRC=/usr/share/datasets/fashion-mnist
if [ ! -d "$SRC" ] && [ -d .data ]; then mkdir -p "$SRC" && cp .data/*.gz "$SRC"/; fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
sweep="experiments/sweeps/fmnist_scaling_full.py:source=arrays,transfer=digits${SWEEP_ARGS:+,$SWEEP_ARGS}"
status=0
"$PYTHON" -m experiments.run --sweep="$sweep" --workdir="$OUT/w" \
  --only="${ONLY:-^ViT-XS4_steps48000}" || status=$?
# Flat copies: the device tool returns files at most two folders below $OUT.
for f in "$OUT"/w/results.jsonl "$OUT"/w/summary.md "$OUT"/w/compute.png; do
  [ -f "$f" ] && cp "$f" "$OUT"/
done
for d in "$OUT"/w/*/; do
  [ -f "$d/metrics.jsonl" ] && cp "$d/metrics.jsonl" "$OUT/$(basename "$d").metrics.jsonl"
  [ -f "$d/log.txt" ] && tail -c 20000 "$d/log.txt" > "$OUT/$(basename "$d").log.txt"
done
exit $status
