#!/bin/bash
# GPU rows (JAX): spikformer_4_384_cifar10 and spikformer_8_768_imagenet, float32 and
# mixed_bfloat16, training and inference, batch 32; then the family table on the GPU: every
# family's preset with its reference in the same run (the reference's own CuPy neurons on the
# GPU, as its users run it), interleaved per repeat, ours on JAX. TensorFlow is not needed.
#     SPIKFORMER_DIR=... SDT_DIR=... QKFORMER_DIR=... META_SPIKEFORMER_DIR=... \
#     REFERENCE_PYTHON=<venv: CUDA torch, cupy, spikingjelly 0.0.0.0.12, timm 0.5.4> \
#     REFERENCE_PYTHON_TIMM06=<the same with timm 0.6.13> \
#     KERAS_BACKEND=jax bash benchmarks/run_gpu_table.sh OUTPUT_DIR [REPEATS]
# FAMILIES="" skips the family table (no reference checkouts needed then); REFERENCE_NEURONS=torch
# runs the references without CuPy (SpikingJelly's torch loop, slower than their CuPy kernels).
set -euo pipefail
PY=${PYTHON:-python3}
OUT_DIR=${1:?usage: run_gpu_table.sh OUTPUT_DIR [REPEATS]}
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
FAMILIES=${FAMILIES-"spikformer sdt qkformer meta_spikeformer"}
if [ -n "$FAMILIES" ]; then
    FAMILIES="$FAMILIES" DEVICE=cuda RESULTS="$OUT_DIR/family_table" PYTHON="$PY" \
        TRAIN_BACKENDS=${TRAIN_BACKENDS:-jax} INFER_BACKENDS=${INFER_BACKENDS:-jax} \
        STEPS=${STEPS:-10} WARMUP=${WARMUP:-3} \
        bash benchmarks/run_family_table.sh "${2:-3}"
fi
