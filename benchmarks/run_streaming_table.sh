#!/usr/bin/env bash
# Streaming vs multi-step forward of spikformer_2_256_dvsgesture at T = 4, 16, 64
# (peak RSS and latency per step), one process per configuration, modes
# interleaved. Records in benchmarks/results/streaming/.
# Usage: PYTHON=.venv/bin/python bash benchmarks/run_streaming_table.sh [backends...]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
OUT=benchmarks/results/streaming
mkdir -p "$OUT"
BACKENDS=("$@")
[ ${#BACKENDS[@]} -gt 0 ] || BACKENDS=(jax tensorflow)
for backend in "${BACKENDS[@]}"; do
  for steps in 4 16 64; do
    for mode in stream multi; do
      "$PYTHON" benchmarks/streaming.py --backend "$backend" --mode "$mode" \
        --num-steps "$steps" --json "$OUT/${backend}_${mode}_${steps}.json"
    done
  done
done
