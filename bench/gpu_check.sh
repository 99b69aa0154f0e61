#!/usr/bin/env bash
# GPU check: the CUDA half of the pipeline, run and measured on a lent H100/H200, in stages.
#
#   bash bench/gpu_check.sh 1          stage 1, torch only, about 8 minutes on one H200
#   bash bench/gpu_check.sh receive    stage 2's wheel arrives, one part per call (see below)
#   bash bench/gpu_check.sh 2          stage 2: ONNX Runtime's CUDA provider (FP16, CUDA graphs), torch.compile
#   GPU_CHECK_DRY_RUN=1 bash bench/gpu_check.sh 1|2    the same on the CPU, tiny sizes, no CUDA rows
#
# DEVELOPERS: the device tool gives a session 15 minutes of device time in all (the machine's start,
# 1-2 minutes, every call and every idle wait count; a machine goes back 30 s after a call).
#  0. Here first (no device time): `cp -r ../shared/data/mnist .mnist` (git-ignored: it must be
#     carried), and the dry run of both stages with the Python packages the device lacks blocked:
#     `make test-all PYTEST_ARGS=tests/test_gpu_check.py` (a slow test: `make test` runs the rest of that file).
#  1. Stage 1, one call: run(command="bash bench/gpu_check.sh 1", carry=[".mnist"], timeout_s=540).
#     Seen on an H200 (2026-12-04, whole): the machine's start about 30 s, the two trainings 14 + 13 s,
#     the export (the CUDA package) 130 s, the gates and tune 73 s, the benches 19 s, then the GPU
#     tests 228 s (their fixture trains and exports again): 490 s. The reports are in $OUT before
#     the GPU tests start, so a run cut there still returns them. Start + stage 1 leave about 380 s:
#     one rerun of the stage does not fit, stage 2 does. Read $OUT's gpu_check.log and stage1.md
#     (files_at) and give_back at once where stage 2 is not next.
#  2. Stage 2 only if `status` then says budget_left_s >= 330 and the machine is warm. The
#     onnxruntime-gpu 1.30.0 wheel (cp312, CUDA 13 like the device's torch; 247 MB) is over a call's
#     64 MiB, so it travels in parts, made here by `bash bench/gpu/wheels.sh` (.ortgpu/, git-ignored),
#     over back-to-back calls (each under 30 s from the last, or the machine and the parts are gone):
#       for P in .ortgpu/part-*: run(command="bash bench/gpu_check.sh receive", carry=[P, ".ortgpu/SHA256SUMS"], timeout_s=60)
#       run(command="bash bench/gpu_check.sh 2", carry=[".mnist"], timeout_s=240)
#  3. give_back as soon as no further call fits, or at once after the last.
# Without a device, say the GPU figures are unmeasured (never quote one that was not seen).
#
# The device has its own python3 (3.12, torch 2.11, onnxruntime 1.30 CPU-only, no registry): `make`
# runs with PY=python3, no venv. bench/gpu/preflight.py checks it first and says what differs from
# our pins. Every report goes to $OUT (else artifacts/gpu_check/out); the whole log is
# $OUT/gpu_check.log (appended per stage).
set -euo pipefail
cd "$(dirname "$0")/.."

stage="${1:?usage: bash bench/gpu_check.sh 1|receive|2}"
out="${OUT:-artifacts/gpu_check/out}"
work="${GPU_CHECK_WORK:-artifacts/gpu_check/run}"
parts="${GPU_CHECK_PARTS:-.ortgpu}"  # where bench/gpu/wheels.sh put the wheel's parts (carried)
wheels="${GPU_CHECK_WHEELS:-/tmp/ortgpu}"  # where they gather, outside the checkout (kept while the machine is warm)
site="${GPU_CHECK_SITE:-/tmp/site}"  # where the wheel is installed (PYTHONPATH)
PY="${PY:-python3}"
export MNIST_MIRROR="${MNIST_MIRROR:-$PWD/.mnist}" PYTHONUNBUFFERED=1
mkdir -p "$out"

if [ -n "${GPU_CHECK_DRY_RUN:-}" ]; then  # the CPU, one epoch (the graph run's on 4,096 rows), smoke-mode benches
  # (torch.compile left out: on the CPU it compiles C++ with Inductor, nothing of the GPU's Triton path)
  dev=cpu capture=off sizes="EPOCHS=1" graph_sizes="TRAIN_SAMPLES=4096" batches=1,64 smoke=--bench-smoke tune_s=0.002 \
    stage2_runtimes="ort"
else
  dev=cuda capture=cuda-graph sizes="" graph_sizes="" batches=1,64,1024,8192 smoke="" tune_s=0.05 \
    stage2_runtimes="ort or compiled"
fi
make_flags=(PY="$PY" DEVICE="$dev" $sizes)
# AOTInductor packages built on the device crashed in every process that loaded them (SIGSEGV in the
# package's own std::regex, torch::aot_inductor::parse_device_str, under AOTIModelPackageLoader's
# constructor; torch 2.11.0+cu130, g++ 13.3, CPU and CUDA packages alike; cuda-gdb's backtrace on an
# H200, 2026-12-04) unless the C++ runtime is loaded first, into the global scope: with the libstdc++
# the compiler links preloaded (the same file the process maps anyway) a CPU package loaded and
# passed the parity gate. Harmless where nothing crashes (the dry run preloads it too).
if stdcxx=$(g++ -print-file-name=libstdc++.so.6 2>/dev/null) && [ -f "$stdcxx" ]; then
  export LD_PRELOAD="$(readlink -f "$stdcxx")${LD_PRELOAD:+:$LD_PRELOAD}"
fi
# The device the AOTInductor package is compiled for: the check's device unless GPU_CHECK_AOTI_DEVICE
# says cpu (then only the package moves: its gate runs it there, the CUDA bench rows skip it).
# AUTOTUNE=off: on CUDA its matmul choices are ATen's alone (CPP is a CPU template, and Triton's are
# not among the backends export/to_aoti.py names), so it buys the package little, while the export
# with it ran 104 s on the H200 before the package's load crashed.
aoti_device="${GPU_CHECK_AOTI_DEVICE:-$dev}"
export_flags=(AUTOTUNE=off)
# The bench's pytest and the GPU tests: the test files that hold `gpu` tests (the others import
# packages the device lacks; tests/test_gpu_check.py checks this list against pytest's collection).
gpu_tests=$(grep -lE 'mark\.gpu|\bDEVICES\b' tests/test_*.py | tr '\n' ' ')

build() {  # train, export (the AOTInductor package for $aoti_device), the gates on $dev and a quick tune
  time make train "${make_flags[@]}" ARTIFACTS="$work"
  # The export's files alone (`make export` would run the gates too, on the package's device);
  # export's --device is the package's device only and is not in its flags stamp, so `make tune`
  # keeps them. AUTOTUNE is in the stamp: every make call here passes export_flags.
  time make "$work/export_report.json" "${make_flags[@]}" "${export_flags[@]}" DEVICE="$aoti_device" ARTIFACTS="$work"
  time make tune "${make_flags[@]}" "${export_flags[@]}" ARTIFACTS="$work" TUNE_SECONDS="$tune_s" TUNE_BATCH_SIZES=1,1024
}

stage_1() {
  "$PY" bench/gpu/preflight.py --stage 1 ${GPU_CHECK_DRY_RUN:+--dry-run}
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || echo "nvidia-smi: none"
  # The fast recipe with its step replayed as a CUDA graph (capture is reported as warm-up, not
  # training time), then the same without capture, exported through the CUDA parity gate (TF32 off).
  time make train "${make_flags[@]}" $graph_sizes CAPTURE="$capture" ARTIFACTS="$work/graph"
  build
  # torch's inference paths and the training step on the device (ONNX Runtime's CUDA rows are stage 2's).
  time "$PY" -m pytest bench/suites/test_inference.py bench/suites/test_train_step.py -q -p no:cacheprovider $smoke \
    -k "$dev and not ort and not compiled and not openvino" --bench-artifacts "$work" --bench-device "$dev" \
    --bench-batch-sizes "$batches" --benchmark-json="$out/bench_stage1.json"
  "$PY" bench/gpu/summary.py --artifacts "$work" --graph "$work/graph" --bench "$out/bench_stage1.json" --out "$out/stage1.md"
  cp "$work/graph/train_metrics.json" "$out/train_metrics_graph.json"
  cp "$work"/train_metrics.json "$work"/parity.md "$work"/variants.json "$out"/
  # Last, after the reports are in $OUT: its `exported` fixture trains and exports again (minutes).
  time "$PY" -m pytest $gpu_tests -q -p no:cacheprovider -m gpu -rs
}

receive() {  # the parts of the onnxruntime-gpu wheel this call carried, into $wheels
  mkdir -p "$wheels"
  cp "$parts"/SHA256SUMS "$wheels"/
  for part in "$parts"/part-*; do cp "$part" "$wheels"/; done
  ls -l "$wheels"
}

stage_2() {
  if [ -f "$wheels/SHA256SUMS" ]; then  # reassemble, check and install the carried wheel
    (cd "$wheels" && cat part-* > "$(awk '{print $2}' SHA256SUMS)" && sha256sum -c SHA256SUMS)
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "$wheels"/*.whl
    export PYTHONPATH="$site"${PYTHONPATH:+:$PYTHONPATH}
  fi
  "$PY" bench/gpu/preflight.py --stage 2 ${GPU_CHECK_DRY_RUN:+--dry-run}
  build  # nothing to do where stage 1's artifacts are still there
  # The gates again, now with ORT's CUDA provider (stage 1 had none: make would see nothing to do),
  # then ORT (CUDA provider, FP16, CUDA graphs, I/O binding) and torch.compile on the device.
  if [ -z "${GPU_CHECK_DRY_RUN:-}" ]; then  # on the CPU they would repeat stage 1's gates exactly
    time "$PY" -m export.parity --artifacts "$work" --device "$dev"
    time "$PY" -m export.variants --artifacts "$work" --device "$dev"
  fi
  time "$PY" -m pytest bench/suites/test_inference.py -q -p no:cacheprovider $smoke -k "$dev and ($stage2_runtimes)" \
    --bench-artifacts "$work" --bench-device "$dev" --bench-batch-sizes "$batches" --benchmark-json="$out/bench_stage2.json"
  "$PY" bench/gpu/summary.py --artifacts "$work" --bench "$out/bench_stage2.json" --out "$out/stage2.md"
}

case "$stage" in
  1) stage_1 ;;
  receive) receive ;;
  2) stage_2 ;;
  *) echo "usage: bash bench/gpu_check.sh 1|receive|2" >&2; exit 2 ;;
esac 2>&1 | tee -a "$out/gpu_check.log"
echo "reports in $out"
