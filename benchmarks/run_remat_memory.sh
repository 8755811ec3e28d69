#!/bin/bash
# Peak training memory against batch size, with and without remat (TensorFlow and JAX):
# spikformer_4_384_cifar10, T=4. Peak RSS does not depend on the number of steps, so
# each run times 2 steps after 1 warm-up. From the repository root, on a quiet machine:
#     bash benchmarks/run_remat_memory.sh
set -euo pipefail
PY=${PYTHON:-python}
R=${RESULTS:-benchmarks/results/remat_memory}
mkdir -p "$R"
B="benchmarks/throughput.py --preset spikformer_4_384_cifar10 --mode train --steps 2 --warmup 1"
for batch in 16 64 32; do  # 32 last: the CPU table has it too
    for backend in jax tensorflow; do
        $PY $B --backend $backend --batch-size $batch --json $R/${backend}_b${batch}.json
        $PY $B --backend $backend --batch-size $batch --remat --json $R/${backend}_b${batch}_remat.json
    done
done
$PY benchmarks/collect.py $R/*.json
