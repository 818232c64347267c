#!/usr/bin/env bash
# Run ON the GPU machine (see tools/gpu_prepare.sh): every test with the cupy backend included, then the
# GPU benchmark, then the MNIST MLP trained in graph mode and eagerly. Logs and JSON land in $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="$PWD:/tmp/site" XPNET_DATA_DIR="$PWD/device-data" XPNET_TEST_MNIST="$PWD/device-data" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -m xpnet info | tee -a "$OUT/gpu.txt"
STAGE=${1:-all}
if [[ $STAGE == all || $STAGE == tests ]]; then
    # GPU-specific files first, so their failures show even if the whole suite runs out of time.
    timeout 240 python3 -m pytest -q -x tests/test_cupy_kernels.py tests/test_cupy_conv.py tests/test_cuda_blas.py \
        tests/test_cupy_graph.py tests/test_device_loop.py 2>&1 | tee "$OUT/gpu-tests.log"
    timeout 300 python3 -m pytest -q -p no:cacheprovider 2>&1 | tail -40 | tee "$OUT/all-tests.log"
fi
if [[ $STAGE == all || $STAGE == train ]]; then
    for g in --graph --no-graph; do
        python3 -m xpnet train mnist --backend cupy $g --no-progress --no-save --json "$OUT/train$g.json" 2>&1 | tail -7
    done
fi
if [[ $STAGE == all || $STAGE == bench ]]; then
    python3 -m xpnet bench --backends cupy,cupy-graph,torch-cuda-eager,torch-cuda-graph,torch-cuda-compile \
        --batch-sizes 32,128,512,2048 --optimizers adam --json "$OUT/bench-gpu.json" 2>&1 | tail -30
    python3 -m xpnet bench --model lenet --backends cupy,cupy-graph,torch-cuda-eager --batch-sizes 128 \
        --optimizers adam --samples 20000 --json "$OUT/bench-lenet-gpu.json" 2>&1 | tail -12
fi
