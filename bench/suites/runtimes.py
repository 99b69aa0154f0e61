"""Every backend the inference benchmark measures, by runtime id, and the devices each runs on.

    eager, torchscript, compiled   PyTorch (compiled: torch.compile, a peer); torchscript skips where
                                   this torch wrote none (handoff.reports.ExportReport says why)
    exported                       model.pt2, torch.export.load(...).module()
    aoti                           model.aoti.pt2, AOTInductor's runner, on the device it was compiled for
    ort                            ONNX Runtime, float32, ORT's default options, `session.run`
    ort-tuned:<variant>            ONNX Runtime on the CPU with the options `make tune` chose per
                                   batch size, through a bound call (the deployable fast path)
    ort-defaults:<variant>         the same call with ORT's default options: what the tuned options
                                   must beat, side by side, to count (bench/suites/test_targets.py)
    ort:fp16                       the fp16 artifact on ORT's CUDA provider, I/O-bound
    openvino:<variant>             OpenVINO reading the same ONNX file (a peer)
    eager-cudagraph, eager-tf32, ort-cudagraph:<variant>   the GPU fast paths (bench.suites.cuda_backends)
"""

from __future__ import annotations

import torch

from bench.suites import cuda_backends, peer_backends
from bench.suites.settings import BenchSettings
from export import backends
from export.head import SoftmaxHead
from handoff import artifacts
from handoff.artifacts import REFERENCE_VARIANT, VARIANT_FILES
from handoff.reports import TuningReport, read_export

RUNTIMES: dict[str, tuple[str, ...]] = {
    "eager": ("cpu", "cuda"),
    "torchscript": ("cpu", "cuda"),
    "exported": ("cpu", "cuda"),
    "aoti": ("cpu", "cuda"),
    "compiled": ("cpu", "cuda"),
    "ort": ("cpu", "cuda"),
    **{f"ort-tuned:{v}": ("cpu",) for v in VARIANT_FILES},
    "ort:fp16": ("cuda",),
    "openvino:fp32": ("cpu",),
    "openvino:int8": ("cpu",),
    "eager-cudagraph": ("cuda",),
    "eager-tf32": ("cuda",),
    "ort-cudagraph:fp32": ("cuda",),
    "ort-cudagraph:fp16": ("cuda",),
}


def build(runtime: str, device: torch.device, head: SoftmaxHead, settings: BenchSettings,
          tuning: TuningReport) -> backends.Backend:
    """The backend for `runtime` on `device`, from the artifacts in `settings`."""
    kind, _, variant = runtime.partition(":")
    variant = variant or REFERENCE_VARIANT
    path = settings.artifacts / VARIANT_FILES[variant]
    if kind == "eager":
        return backends.eager(head, device)
    if kind == "torchscript":
        missing = read_export(settings.artifacts).torchscript_missing
        if missing:
            return backends.Backend(f"torchscript-{device.type}", device.type, skipped=f"no {artifacts.TORCHSCRIPT}: {missing}")
        return backends.torchscript(settings.artifacts / artifacts.TORCHSCRIPT, device)
    if kind == "exported":
        return backends.exported_program(settings.artifacts / artifacts.EXPORTED_PROGRAM, device)
    if kind == "aoti":
        return backends.aoti(settings.artifacts / artifacts.AOTI_PACKAGE, device)
    if kind == "compiled":
        return peer_backends.compiled(head, device)
    if kind == "ort":
        return backends.onnxruntime(path, device, settings.threads, variant)
    if kind == "ort-tuned":
        return backends.onnxruntime_tuned(path, variant, tuning.records(variant))
    if kind == "ort-defaults":
        return backends.onnxruntime_tuned(path, variant, {}, kind="defaults")
    if kind == "openvino":
        return peer_backends.openvino(path, variant, settings.threads)
    if kind == "eager-cudagraph":
        return cuda_backends.eager_cuda_graph(head, device)
    if kind == "eager-tf32":
        return cuda_backends.eager_tf32(head, device)
    if kind == "ort-cudagraph":
        return cuda_backends.ort_cuda_graph(path, device, variant)
    raise ValueError(f"unknown runtime {runtime!r}; known: {', '.join(RUNTIMES)}")

