#!/bin/bash
# Ratios against the reference from interleaved rounds (one pair of single runs says little on
# a noisy machine): ROUNDS rounds of reference train, JAX train, TensorFlow train, reference
# infer, JAX infer, one process each, spikformer_4_384_cifar10, batch 32. From the repository
# root, on a quiet machine:
#     REFERENCE_DIR=<ZK-Zhou/spikformer checkout> REFERENCE_PYTHON=<its venv's python> \
#         PYTHON=<our venv's python> bash benchmarks/run_interleaved.sh [ROUNDS]
# Prints one table row per run (images/s is the 10th column for ours, the 6th for the reference).
set -euo pipefail
: "${REFERENCE_DIR:?set REFERENCE_DIR to a checkout of ZK-Zhou/spikformer}"
PY=${PYTHON:-python}
REF_PY=${REFERENCE_PYTHON:-python}
B="--preset spikformer_4_384_cifar10 --batch-size 32"
for round in $(seq "${1:-3}"); do
    for mode in train infer; do
        echo "round $round reference $mode $("$REF_PY" benchmarks/reference_throughput.py \
            --reference-dir "$REFERENCE_DIR" $B --mode $mode 2>&1 | grep '| reference' | tail -1)"
        backends="jax"
        [ "$mode" = train ] && backends="jax tensorflow"
        for backend in $backends; do
            echo "round $round $backend $mode $("$PY" benchmarks/throughput.py $B \
                --backend $backend --mode $mode 2>&1 | tail -1)"
        done
    done
done
