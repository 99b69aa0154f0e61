#!/usr/bin/env bash
# Here, before a GPU check's stage 2: the onnxruntime-gpu wheel for the lent machine's Python 3.12
# (CUDA 13, like its torch 2.11+cu130), split into parts a device call can carry (64 MiB each at most,
# the working tree included), with SHA256SUMS naming the whole wheel. Writes .ortgpu/ (git-ignored).
# Usage: bash bench/gpu/wheels.sh [VERSION]   (default 1.30.0: the onnxruntime the machine has)
set -euo pipefail
cd "$(dirname "$0")/../.."
version="${1:-1.30.0}"
rm -rf .ortgpu && mkdir -p .ortgpu/download
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  -d .ortgpu/download "onnxruntime-gpu==$version"
wheel=$(cd .ortgpu/download && ls onnxruntime_gpu-*.whl)
(cd .ortgpu/download && sha256sum "$wheel" > ../SHA256SUMS && split -b 56M -d -a 2 "$wheel" ../part-)
rm -rf .ortgpu/download
ls -l .ortgpu
