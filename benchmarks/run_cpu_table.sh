#!/bin/bash
# Every row of the CPU table in benchmarks/README.md: spikformer_4_384_cifar10, T=4, batch 32.
# Run on a quiet machine (nothing else using the cores), from the repository root:
#     bash benchmarks/run_cpu_table.sh [BEFORE_COMMIT]
# With BEFORE_COMMIT (e.g. 7a1fc01), also measures that commit's code through a git worktree.
set -euo pipefail
PY=${PYTHON:-python}
R=${RESULTS:-benchmarks/results/cpu_table}
mkdir -p "$R"
B="benchmarks/throughput.py --preset spikformer_4_384_cifar10 --batch-size 32"
$PY $B --backend tensorflow --mode train --json $R/tensorflow_train.json
$PY $B --backend tensorflow --mode train --remat --json $R/tensorflow_train_remat.json
$PY $B --backend tensorflow --mode train --dtype mixed_bfloat16 --json $R/tensorflow_train_bf16.json
$PY $B --backend jax --mode train --json $R/jax_train.json
$PY $B --backend jax --mode train --remat --json $R/jax_train_remat.json
XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type= \
    $PY $B --backend jax --mode train --json $R/jax_train_no_ynn.json
# jaxlib's default (YNNPACK convolution fusion on), which keras_spikformer turns off on import.
XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=+individual_convolution \
    $PY $B --backend jax --mode train --json $R/jax_train_ynn_conv.json
$PY $B --backend torch --mode train --json $R/torch_train.json
$PY $B --backend tensorflow --mode infer --json $R/tensorflow_infer.json
$PY $B --backend jax --mode infer --json $R/jax_infer.json
$PY $B --backend torch --mode infer --json $R/torch_infer.json
if [ $# -ge 1 ]; then
    before=$(mktemp -d)/before
    git worktree add -f "$before" "$1" >/dev/null
    PYTHONPATH="$before" $PY $B --backend tensorflow --mode train --json $R/tensorflow_train_before.json
    PYTHONPATH="$before" $PY $B --backend jax --mode train --json $R/jax_train_before.json
    PYTHONPATH="$before" $PY $B --backend torch --mode train --json $R/torch_train_before.json
    git worktree remove --force "$before"
fi
# The reference (ZK-Zhou/spikformer, SpikingJelly neurons on the torch backend) in the same
# run, and the machine it all ran on: REFERENCE_DIR=<checkout> REFERENCE_PYTHON=<python of
# its venv> (benchmarks/README.md, "The reference beside every figure").
$PY benchmarks/machine_info.py --json $R/machine.json
if [ -n "${REFERENCE_DIR:-}" ]; then
    ref() { "${REFERENCE_PYTHON:-python}" benchmarks/reference_throughput.py \
        --reference-dir "$REFERENCE_DIR" --preset spikformer_4_384_cifar10 --batch-size 32 "$@"; }
    ref --mode train --json $R/reference_train.json
    ref --mode infer --json $R/reference_infer.json
else
    echo "REFERENCE_DIR not set: no reference rows (old reference_*.json files are left out)" >&2
    rm -f $R/reference_train.json $R/reference_infer.json
fi
$PY benchmarks/collect.py $R/*.json
