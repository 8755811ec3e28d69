#!/bin/bash
# Every row of the input-pipeline table in benchmarks/README.md (issue: ImageNet-scale input
# pipeline). Run on a quiet machine, from the repository root:
#     REFERENCE_PYTHON=<python with torch, torchvision, timm> bash benchmarks/run_pipeline_table.sh
# The synthetic JPEG datasets are generated once under CACHE_DIR (default ~/.cache/...).
set -euo pipefail
PY=${PYTHON:-python}
R=${RESULTS:-benchmarks/results/input_pipeline}
mkdir -p "$R"
cache=()
if [ -n "${CACHE_DIR:-}" ]; then cache=(--cache-dir "$CACHE_DIR"); fi
ref=()
if [ -n "${REFERENCE_PYTHON:-}" ]; then
    ref=(--compare-reference --reference-python "$REFERENCE_PYTHON")
fi
for n in 2000 20000; do
    $PY benchmarks/input_pipeline.py --num-images $n --image-size 224 "${cache[@]}" "${ref[@]}" \
        --json $R/pipeline_$n.json
done
# fit on the streaming pipeline against fixed arrays, same model and batch.
T="benchmarks/throughput.py --preset spikformer_tiny_imagenet --backend tensorflow --mode train"
T="$T --batch-size 32 --steps 20"
$PY $T --input arrays --json $R/fit_arrays.json
$PY $T --input pipeline --num-images 2000 "${cache[@]}" --json $R/fit_pipeline.json
$PY - "$R" <<'PYEOF'
import json, sys
r = sys.argv[1]
a, p = (json.load(open(f"{r}/fit_{k}.json"))["images_per_second"] for k in ("arrays", "pipeline"))
print(f"fit: arrays {a} images/s, pipeline {p} images/s: {p / a:.2f}x")
PYEOF
