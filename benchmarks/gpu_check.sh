#!/usr/bin/env bash
# The checks that need a GPU, as one command for a lent GPU machine (README, "GPU checks"): the CUDA tests
# of the engine, its losses and k-means, the InfoNCE kernel's benchmark, and the engine's configs per minute
# alone against packs. Needs only torch, NumPy, SciPy, scikit-learn and pytest (no Ray, no MLflow), so it
# runs where those are all that is installed. Writes its logs and JSON to $OUT (else ./gpu_check).
#   bash benchmarks/gpu_check.sh            # PYTHON=... to choose the interpreter (default python3)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py="${PYTHON:-python3}"
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$out/gpu.txt"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1 | tee -a "$out/gpu.txt"
"$py" -m pytest -q -p no:cacheprovider tests/trainables/test_losses.py tests/trainables/test_kmeans.py \
    tests/trainables/test_engine.py 2>&1 | tee "$out/tests.txt" || status=1
"$py" benchmarks/info_nce_kernel.py --json "$out/info_nce.json" 2>&1 | tee "$out/info_nce.txt" || status=1
"$py" benchmarks/engine_throughput.py --seeds 16 --pack-sizes 1 64 auto --json "$out/engine.json" 2>&1 \
    | tee "$out/engine.txt" || status=1
exit "$status"
