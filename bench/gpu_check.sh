#!/usr/bin/env bash
# GPU check: train on CUDA with and without CUDA-graph capture, export with the CUDA parity gate and
# the variants' gate (fp16 on ORT's CUDA provider), tune ORT on the CPU, and benchmark CPU and CUDA
# (time to 98% eager and captured, training step, inference with every variant, peer and GPU fast
# path: ORT I/O binding and CUDA graphs, eager CUDA graphs, TF32 on/off), in one go.
#
# Usage, on a CUDA machine whose python3 already has torch, torchvision, onnx, onnxscript,
# onnxruntime(-gpu), pytest-benchmark and matplotlib (no venv, no network):
#     MNIST_MIRROR=/path/to/mnist-gz bash bench/gpu_check.sh
# MNIST_MIRROR defaults to ./.mnist (copy ../shared/data/mnist there to carry it to a remote box).
# ORT_GPU_WHEEL=/path/onnxruntime_gpu-*.whl: installed first (--no-deps, replacing a CPU-only
# onnxruntime: both provide the same module) so ORT's CUDA provider is measured; without it the
# ORT CUDA rows are skipped with the reason.
# Every report is copied to $OUT when that variable is set (else artifacts/gpu_check/out); the
# whole log is $OUT/gpu_check.log. Budget: under 8 minutes on one H100/H200.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${OUT:-artifacts/gpu_check/out}"
work=artifacts/gpu_check/run
mkdir -p "$out"
export MNIST_MIRROR="${MNIST_MIRROR:-$PWD/.mnist}"
export PYTHONUNBUFFERED=1

{
  if [ -n "${ORT_GPU_WHEEL:-}" ]; then
    python3 -m pip uninstall -y -q onnxruntime onnxruntime-gpu || true
    python3 -m pip install -q --no-deps "$ORT_GPU_WHEEL"
  fi
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, onnxruntime as ort; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), '| onnxruntime', ort.__version__, ort.get_available_providers())"
  # DEVICE=cuda: training and parity must really use CUDA (an error, not a fallback, without it).
  # The training line: the fast recipe with its step replayed as a CUDA graph (capture time is
  # reported as warm-up, not training time), then the same without capture.
  time make train PY=python3 DEVICE=cuda CAPTURE=cuda-graph ARTIFACTS="$work/graph"
  time make train export tune bench PY=python3 DEVICE=cuda ARTIFACTS="$work" \
    BENCH_FLAGS="--bench-batch-sizes 1,64,1024,8192"
  python3 -m pytest -q tests -m gpu -p no:cacheprovider
} 2>&1 | tee "$out/gpu_check.log"

cp "$work/graph/train_metrics.json" "$out/train_metrics_graph.json"
cp "$work"/train_metrics.json "$work"/parity.md "$work"/parity.json "$work"/variants.json "$work"/ort_tuning.json "$out"/
cp "$work"/bench/results.json "$work"/bench/report.md "$work"/bench/report.png "$out"/
echo "reports in $out"
