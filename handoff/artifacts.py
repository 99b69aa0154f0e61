"""Every file name the stages hand each other, in one place, and the command that makes each (the
Makefile's targets repeat the names; tests/test_make.py checks it names no other).

    make train   ->  model.pt, train_metrics.json               (checkpoints/ while it runs)
    make export  ->  model.torchscript.pt (while torch has TorchScript), model.pt2, model.aoti.pt2,
                     model.onnx, export_report.json,
                     parity.json (+ parity.md), held_out.npz, the variants' ONNX files, variants.json
    make tune    ->  ort_tuning.json
    make deploy  ->  deploy/ (the bundle; its own manifest.json)
    make web     ->  deploy/web/ (the page, inside the bundle and listed in its manifest.json)
    make cpp     ->  bench/cpp.json (the C++ loader's run; make bench runs it too, for MNIST)
    make bench   ->  bench/results.json, bench/report.md, bench/report.png
Every stage records what it wrote in manifest.json (handoff.manifest).
"""

from __future__ import annotations

MANIFEST = "manifest.json"
DATA = "data"  # where the datasets' files go when no data folder is named (DATA_DIR, --data-dir)

# training
MODEL = "model.pt"
TRAIN_METRICS = "train_metrics.json"
CHECKPOINTS = "checkpoints"
TRAIN_LOCK = ".train.lock"

# export
TORCHSCRIPT = "model.torchscript.pt"  # absent where this torch refuses TorchScript (export_report.json says why)
EXPORTED_PROGRAM = "model.pt2"  # torch.export.save: an ExportedProgram, dynamic batch
AOTI_PACKAGE = "model.aoti.pt2"  # AOTInductor: the compiled model for the export device, and its weights
HELD_OUT_PROBS = "held_out_probs.idx"  # the gate's reference probabilities on held_out.npz's rows, float32 IDX
ONNX = "model.onnx"  # the float32 ONNX model: the reference every variant is held to
EXPORT_REPORT = "export_report.json"
PARITY = "parity.json"
PARITY_MD = "parity.md"
HELD_OUT = "held_out.npz"  # the labelled rows the parity gate judged (handoff.held_out)
VARIANTS = "variants.json"
REFERENCE_VARIANT = "fp32"
VARIANT_FILES = {  # variant -> its ONNX file
    REFERENCE_VARIANT: ONNX,
    "int8": "model.int8.onnx",
    "int8-dynamic": "model.int8-dynamic.onnx",
    "fp16": "model.fp16.onnx",
}

# tuning
ORT_TUNING = "ort_tuning.json"

# deploy: a folder of its own, with its own manifest.json; the names below are inside it
BUNDLE = "deploy"
MODEL_CARD = "MODEL_CARD.md"
REQUIREMENTS = "requirements.txt"
TRITON = "triton"  # a Triton model repository
KSERVE_MANIFEST = "kserve/inferenceservice.yaml"

# the browser page: a folder of the bundle, self-contained (any static server serves it)
WEB = "web"  # inside the bundle
WEB_INDEX = "index.html"  # inside WEB
WEB_SPEC = "page.json"  # inside WEB: what the page loads first (contract, variants, evaluation files)

# bench
BENCH = "bench"
BENCH_RESULTS = f"{BENCH}/results.json"  # `make bench`: pytest-benchmark's JSON
BENCH_STUDY = f"{BENCH}/study.json"  # `make bench-study`: the same format, the longer studies
CPP_RESULTS = f"{BENCH}/cpp.json"  # `make cpp`: the C++ loader's accuracy, agreement, batch-1 p50, load time
BENCH_REPORT = f"{BENCH}/report.md"
BENCH_PLOT = f"{BENCH}/report.png"
SERVE_RESULTS = f"{BENCH}/serve.json"  # `make bench-serve`: every point, the robustness runs, versions
SERVE_REPORT = f"{BENCH}/serve.md"
SERVE_PLOT = f"{BENCH}/serve.png"

# The command that (re)makes each hand-off file of the artifacts folder, for the hints of the stages
# that read them (the bundle's own files: `make deploy`, its page: `make web`).
MADE_BY = {
    MODEL: "make train", TRAIN_METRICS: "make train",
    **dict.fromkeys((TORCHSCRIPT, EXPORTED_PROGRAM, AOTI_PACKAGE, ONNX, EXPORT_REPORT, PARITY, PARITY_MD, HELD_OUT,
                     HELD_OUT_PROBS, VARIANTS), "make export"),
    **dict.fromkeys(VARIANT_FILES.values(), "make export"),
    ORT_TUNING: "make tune",
    BENCH_RESULTS: "make bench", BENCH_STUDY: "make bench-study", CPP_RESULTS: "make cpp",
}


def optimized(onnx_file: str) -> str:
    """`make tune --save-optimized on`: the graph ORT runs, saved beside `onnx_file`."""
    return onnx_file.removesuffix(".onnx") + ".optimized.onnx"
