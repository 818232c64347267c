#!/usr/bin/env bash
# The one GPU verification run. Run it ON the GPU machine, from the checkout, with what tools/gpu_prepare.sh
# put beside it (wheels in .whl/, MNIST in device-data/); through the device tool:
#   run(command="bash tools/gpu_verify.sh", carry=[".whl", "device-data"], timeout_s=540)
# It ends inside 480 s even when steps fail or hang: each step has its own deadline (they add up to 480 s),
# and no step runs past the whole run's. Results land in $OUT (default ./gpu-verify-out) as they come, in
# at most 8 files, since the device tool brings back no more: summary.txt (readable on its own, and also
# printed), logs.tgz (a log per step, re-packed after each), the JSON results and the JUnit XML.
# Name steps to run only those (a re-run with the time that is left): bash tools/gpu_verify.sh smoke tests-gpu
# Steps: env smoke train-graph train-eager bench tests-gpu tests-params nccl lenet. Without a CUDA device it stops
# after `env` with "no CUDA device" in the summary and exit code 3.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-verify-out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
BUDGET=480
START=$SECONDS
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
LOGS=$(mktemp -d)  # step logs, packed into $OUT/logs.tgz after every step
FAILED=0
GPU_FILES="tests/backends/test_cupy_kernels.py tests/training/test_cupy_graph.py tests/backends/test_cupy_guard.py tests/backends/test_cupy_conv.py
           tests/backends/test_cuda_blas.py tests/bench/test_bench_gpu.py"

say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }
report() { "$PY" tools/gpu_report.py "$@" | tee -a "$SUMMARY"; }  # summary lines from a step's result file
indent() { grep -v '^ *$' "$LOGS/$1.log" | tail -"$2" | sed 's/^/  /' | tee -a "$SUMMARY"; }
left() { echo $((BUDGET - (SECONDS - START))); }

# step NAME SECONDS COMMAND...: run COMMAND under its deadline (cut to what the run has left), output in NAME.log.
step() {
    local name=$1 want=$2 t rc t0=$SECONDS status
    shift 2
    t=$(left)
    ((want < t)) && t=$want
    if ((t < 5)); then
        say "SKIP    $name: the run's $BUDGET s are spent"
        return 124
    fi
    timeout -k 5 "$t" "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    tar czf "$OUT/logs.tgz" -C "$LOGS" . 2>/dev/null
    case $rc in
        0) status=PASS ;;
        124 | 137) status="TIMEOUT" ;;
        *) status="FAIL" ;;
    esac
    [[ $rc != 0 ]] && FAILED=$((FAILED + 1))
    say "$(printf '%-7s %s (%d s of %d s, exit %d; log %s.log)' "$status" "$name" $((SECONDS - t0)) "$t" "$rc" "$name")"
    return $rc
}

wanted() { [[ -z ${STEPS:-} || " $STEPS " == *" $1 "* ]]; }
STEPS="$*"

if [[ -d .whl ]] && compgen -G ".whl/*.whl" >/dev/null; then  # no package index there: carried wheels
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/xpnet-site \
        .whl/*.whl >"$LOGS/setup.log" 2>&1 || say "setup: installing the carried wheels failed (see setup.log)"
fi
export PYTHONPATH="$PWD:/tmp/xpnet-site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TQDM_DISABLE=1
DATA="$PWD/device-data"
[[ -d $DATA ]] || DATA="$PWD/../shared/data/mnist"
export XPNET_DATA_DIR="$DATA" XPNET_TEST_MNIST="$DATA"
say "xpnet GPU verification, $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

# a. environment (always: it decides whether there is anything to verify)
step env 15 "$PY" tools/gpu_checks.py env
rc=$?
indent env 20
if [[ $rc == 3 ]]; then
    say "no CUDA device: nothing was verified"
    rm -rf "$LOGS"
    exit 3
fi

# b. smoke: the ctypes GEMM, a captured GEMM's replay, graph-mode fit against eager fit
if wanted smoke; then
    step smoke 40 "$PY" tools/gpu_checks.py smoke
    indent smoke 12
fi

# c. xpnet train mnist on CuPy, 5 epochs, with and without the CUDA graph
for mode in graph eager; do
    wanted "train-$mode" || continue
    flag=--graph
    [[ $mode == eager ]] && flag=--no-graph
    step "train-$mode" 45 "$PY" -m xpnet train mnist --backend cupy $flag --epochs 5 --no-progress --no-save \
        --json "$OUT/train-$mode.json"
    report train "$OUT/train-$mode.json" 0.975 || indent "train-$mode" 5
done

# d. the benchmark at batch 128, Adam, 3 repeats; torch.compile in mode `default` (no autotuning in the budget)
if wanted bench; then
    step bench 120 "$PY" -m xpnet bench --backends cupy,cupy-graph,torch-cuda-eager,torch-cuda-graph,torch-cuda-compile \
        --batch-sizes 128 --optimizers adam --repeats 3 --compile-mode default --no-progress --json "$OUT/bench-gpu.json"
    report bench "$OUT/bench-gpu.json" || indent bench 5
fi

# e. the GPU test files, then the cupy/torch-on-CUDA parameters of every other test; no -x. A hung test costs
# its own 45 s where pytest-timeout is installed, not the step; -v names each test in the log as it ends.
PYTEST=("$PY" -m pytest -v -p no:cacheprovider --maxfail=500 -rfE)
"$PY" -c "import pytest_timeout" 2>/dev/null && PYTEST+=(--timeout=45)
if wanted tests-gpu; then
    # shellcheck disable=SC2086
    step tests-gpu 120 "${PYTEST[@]}" --junitxml="$OUT/junit-gpu.xml" $GPU_FILES
    report junit "$OUT/junit-gpu.xml" "$LOGS/tests-gpu.log"
fi
if wanted tests-params; then
    ignores=()
    for f in $GPU_FILES tests/backends/test_cupy_on_fake.py; do ignores+=(--ignore "$f"); done
    step tests-params 55 "${PYTEST[@]}" -k "cupy or cuda or gpu or torch" --junitxml="$OUT/junit-params.xml" \
        "${ignores[@]}" tests benchmarks
    report junit "$OUT/junit-params.xml" "$LOGS/tests-params.log"
fi

# f. one NCCL rank (a GPU allows one): the allreduce eager and captured, data-parallel fit through it
if wanted nccl; then
    step nccl 10 "$PY" tools/gpu_checks.py nccl
    indent nccl 8
fi

# g. with what is left: LeNet, xpnet's graph step against PyTorch CUDA eager
if wanted lenet; then
    step lenet 30 "$PY" -m xpnet bench --model lenet --backends cupy-graph,torch-cuda-eager --batch-sizes 128 \
        --optimizers adam --repeats 3 --samples 20000 --no-progress --json "$OUT/bench-lenet-gpu.json"
    report bench "$OUT/bench-lenet-gpu.json" || indent lenet 5
fi

say "done in $((SECONDS - START)) s; $FAILED step(s) failed or timed out"
rm -rf "$LOGS"
[[ $FAILED == 0 ]]
