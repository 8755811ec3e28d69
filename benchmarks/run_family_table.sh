#!/bin/bash
# The family table of benchmarks/README.md: each family's preset measured with ours (training on
# TensorFlow, JAX and torch, remat training where the backbone has `remat`; inference on JAX and
# torch) and with its reference PyTorch code, interleaved in every repeat (reference train, ours
# train, reference infer, ours infer, then the next preset), one process per run. Then
# collect.py's family table: medians over repeats, ratios per family, within this machine.
# From the repository root, on a quiet machine:
#     SPIKFORMER_DIR=~/spikformer SDT_DIR=~/Spike-Driven-Transformer QKFORMER_DIR=~/QKFormer \
#     META_SPIKEFORMER_DIR=~/Spike-Driven-Transformer-V2 \
#     REFERENCE_PYTHON=~/refvenv/bin/python REFERENCE_PYTHON_TIMM06=~/refvenv-timm06/bin/python \
#     PYTHON=.venv/bin/python bash benchmarks/run_family_table.sh [REPEATS]
# REPEATS defaults to 3. FAMILIES="sdt qkformer" runs only those families (each needs its *_DIR);
# TRAIN_BACKENDS, INFER_BACKENDS, REMAT_BACKENDS, STEPS, WARMUP and RESULTS change the rest;
# BATCH=2 (every preset at that batch) with STEPS=1 WARMUP=0 is a smoke run, not figures.
# DEVICE=cuda runs the references on the GPU with their own CuPy neurons (REFERENCE_NEURONS=torch
# without CuPy); benchmarks/run_gpu_table.sh does that, ours on JAX.
set -euo pipefail
PY=${PYTHON:-python}
REPEATS=${1:-3}
R=${RESULTS:-benchmarks/results/family_table}
STEPS=${STEPS:-5}
WARMUP=${WARMUP:-2}
FAMILIES=${FAMILIES:-"spikformer sdt qkformer meta_spikeformer"}
TRAIN_BACKENDS=${TRAIN_BACKENDS:-"tensorflow jax torch"}
INFER_BACKENDS=${INFER_BACKENDS:-"jax torch"}
REMAT_BACKENDS=${REMAT_BACKENDS:-"jax"}
DEVICE=${DEVICE:-cpu}
REFERENCE_OPTIONS=(--device "$DEVICE")
[ "$DEVICE" = cpu ] || REFERENCE_OPTIONS+=(--neuron-backend "${REFERENCE_NEURONS:-cupy}")
# family preset batch (ImageNet presets at batch 8: the references' training memory)
ROWS="spikformer spikformer_4_384_cifar10 32
sdt sdt_2_512_cifar10 32
sdt sdt_8_384_imagenet 8
qkformer qkformer_4_384_cifar10 32
meta_spikeformer meta_spikeformer_15m_imagenet 8"
[[ "$REPEATS" =~ ^[1-9][0-9]*$ ]] || { echo "REPEATS must be a positive integer, got '$REPEATS'" >&2; exit 2; }

reference_dir() {  # the checkout of a family's reference, from its variable
    case $1 in
        spikformer) echo "${SPIKFORMER_DIR:-}" ;;
        sdt) echo "${SDT_DIR:-}" ;;
        qkformer) echo "${QKFORMER_DIR:-}" ;;
        meta_spikeformer) echo "${META_SPIKEFORMER_DIR:-}" ;;
        *) echo "unknown family '$1' in FAMILIES (spikformer sdt qkformer meta_spikeformer)" >&2; exit 2 ;;
    esac
}
reference_python() {  # Spikformer's code needs timm 0.5.4, the others timm 0.6.x
    if [ "$1" = spikformer ]; then echo "${REFERENCE_PYTHON:-python}"
    else echo "${REFERENCE_PYTHON_TIMM06:-${REFERENCE_PYTHON:-python}}"; fi
}
for family in $FAMILIES; do  # every checkout named before anything runs
    dir=$(reference_dir "$family")
    var=$(echo "${family}_DIR" | tr a-z A-Z)
    [ -n "$dir" ] && [ -d "$dir" ] || {
        echo "$var is not set to a checkout: the $family rows need its reference" \
            "(benchmarks/README.md, 'The reference beside every figure'), or leave $family out of FAMILIES" >&2
        exit 2
    }
done
supports_remat() {  # does the preset's backbone take `remat`?
    KERAS_BACKEND=jax "$PY" - "$1" <<'EOF'
import inspect, json, sys
import keras
import keras_spikformer  # noqa: F401 (registers the backbones)
from keras_spikformer.preset_builder import resolve
config = json.load(open(f"{resolve(sys.argv[1])}/config.json"))
cls = keras.saving.get_registered_object(config["registered_name"])
sys.exit(0 if "remat" in inspect.signature(cls.__init__).parameters else 1)
EOF
}
mkdir -p "$R"
rm -f "$R"/*.json "$R/failed.txt"
failed() { echo "$*" >>"$R/failed.txt"; echo "FAILED: $*" >&2; }
"$PY" benchmarks/machine_info.py --json "$R/machine.json"
declare -A REMAT
while read -r family preset batch; do
    [[ " $FAMILIES " == *" $family "* ]] || continue
    REMAT[$preset]=$(supports_remat "$preset" && echo yes || echo no)
done <<<"$ROWS"
for i in $(seq "$REPEATS"); do
    while read -r family preset batch; do
        [[ " $FAMILIES " == *" $family "* ]] || continue
        batch=${BATCH:-$batch}
        common=(--preset "$preset" --batch-size "$batch" --steps "$STEPS" --warmup "$WARMUP")
        for mode in train infer; do
            out="$R/r${i}_${preset}_reference_${mode}.json"
            "$(reference_python "$family")" benchmarks/reference_throughput.py \
                --reference-dir "$(reference_dir "$family")" "${REFERENCE_OPTIONS[@]}" \
                "${common[@]}" --mode $mode \
                --json "$out" || failed "reference $preset $mode (repeat $i)"
            backends=$INFER_BACKENDS
            [ $mode = train ] && backends=$TRAIN_BACKENDS
            for backend in $backends; do
                "$PY" benchmarks/throughput.py "${common[@]}" --backend "$backend" --mode $mode \
                    --json "$R/r${i}_${preset}_${backend}_${mode}.json" ||
                    failed "$backend $preset $mode (repeat $i)"
            done
            [ $mode = train ] && [ "${REMAT[$preset]}" = yes ] || continue
            for backend in $REMAT_BACKENDS; do
                "$PY" benchmarks/throughput.py "${common[@]}" --backend "$backend" --mode train \
                    --remat --json "$R/r${i}_${preset}_${backend}_train_remat.json" ||
                    failed "$backend remat $preset train (repeat $i)"
            done
        done
    done <<<"$ROWS"
done
"$PY" benchmarks/collect.py "$R"/*.json --family-table --markdown "$R/family_table.md"
if [ -f "$R/failed.txt" ]; then
    echo "Some runs failed (their rows are missing): see $R/failed.txt" >&2
    exit 1
fi
