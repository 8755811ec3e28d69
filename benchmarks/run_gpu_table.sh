#!/bin/bash
# GPU rows (JAX): spikformer_4_384_cifar10 and spikformer_8_768_imagenet, float32 and
# mixed_bfloat16, training and inference, batch 32. TensorFlow is not needed.
#     KERAS_BACKEND=jax bash benchmarks/run_gpu_table.sh OUTPUT_DIR
set -euo pipefail
PY=${PYTHON:-python3}
OUT_DIR=${1:?usage: run_gpu_table.sh OUTPUT_DIR}
mkdir -p "$OUT_DIR"
for preset in spikformer_4_384_cifar10 spikformer_8_768_imagenet; do
    for dtype in float32 mixed_bfloat16; do
        for mode in train infer; do
            $PY benchmarks/throughput.py --preset $preset --backend jax --mode $mode \
                --batch-size 32 --dtype $dtype --steps 10 --warmup 3 \
                --json "$OUT_DIR/gpu_${preset}_${mode}_${dtype}.json"
        done
    done
done
$PY benchmarks/collect.py "$OUT_DIR"/gpu_*.json
