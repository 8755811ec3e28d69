#!/bin/bash
# Peak training memory against batch size, with and without remat (TensorFlow and JAX):
# spikformer_4_384_cifar10, T=4. Peak RSS does not depend on the number of steps (nor on
# the machine's load), so each run times 2 steps after 1 warm-up. From the repository root:
#     bash benchmarks/run_remat_memory.sh
# VARIANTS="remat" (or "plain") runs only those rows; BATCHES and BACKENDS likewise.
set -euo pipefail
PY=${PYTHON:-python}
R=${RESULTS:-benchmarks/results/remat_memory}
mkdir -p "$R"
B="benchmarks/throughput.py --preset spikformer_4_384_cifar10 --mode train --steps 2 --warmup 1"
for batch in ${BATCHES:-16 64 32}; do  # 32 last: the CPU table has it too
    for backend in ${BACKENDS:-jax tensorflow}; do
        for variant in ${VARIANTS:-plain remat}; do
            if [ "$variant" = remat ]; then
                $PY $B --backend $backend --batch-size $batch --remat --json $R/${backend}_b${batch}_remat.json
            else
                $PY $B --backend $backend --batch-size $batch --json $R/${backend}_b${batch}.json
            fi
        done
    done
done
$PY benchmarks/collect.py $R/*.json
