#!/usr/bin/env bash
# Run HERE (with network) before a session's GPU run: the GPU machine reaches no package index and gets the
# checkout only. Its image already has CuPy (cupy-cuda13x), numpy, torch, pytest, pytest-benchmark,
# hypothesis, safetensors, tqdm, threadpoolctl and matplotlib; this fetches the rest as wheels into .whl/
# and copies the MNIST files into device-data/ (both git-ignored). Then, through the device tool:
#   run(command="bash tools/gpu_verify.sh", carry=[".whl", "device-data"], timeout_s=540)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl device-data
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 -d .whl \
    array-api-compat==1.16.0 array-api-strict==2.6.1 platformdirs==4.14.7
cp ../shared/data/mnist/*.gz device-data/
ls -l .whl device-data
