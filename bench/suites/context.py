"""The context kept with every benchmark number: the machine, its CPU flags, the versions, the
precision `auto` picks, the ORT options in use, and every skipped case with its reason. These are
pytest hooks; bench/suites/conftest.py imports them so pytest finds them."""

from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import torch

from bench.suites.hardware import gemm_rates
from bench.suites.peer_backends import package_version
from bench.suites.settings import settings_of
from handoff import artifacts
from handoff.cpu import cpu_model
from handoff.errors import PipelineError
from handoff.ort_options import pinned
from handoff.reports import read_export, read_tuning
from pipeline.placement import resolve_precision
from pipeline.provenance import cpu_dispatch

_skipped: list[dict[str, str]] = []


def pytest_runtest_logreport(report):
    if report.skipped and report.when in ("setup", "call"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append({"test": report.nodeid, "reason": reason.removeprefix("Skipped: ")})


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["skipped"] = list(_skipped)


def pytest_benchmark_update_machine_info(config, machine_info):
    settings = settings_of(config)
    machine_info.update(
        dataset=settings.dataset,
        cpu_model=cpu_model(),
        cpu_cores=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        ort_intra_op_threads=settings.threads,
        versions={
            "torch": str(torch.__version__),
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
            "cuda": torch.version.cuda,
            "openvino": package_version("openvino"),
        },
        ort_available_providers=ort.get_available_providers(),
        ort_loading_providers=loading_providers(),
        ort_session_options=pinned(settings.threads),
        ort_tuning=_tuning_summary(settings.artifacts),
        aoti=_aoti_summary(settings.artifacts),
        cpu_flags=cpu_dispatch(),
        precision=_precision_choices(settings.device),
        fp32_gemm_gflops=statistics.median(
            gemm_rates(torch.float32, torch.device("cpu"), settings.gemm_seconds, settings.gemm_size)),
        gpu=_gpu_info(),
    )


def loading_providers() -> list[str]:
    """The ORT execution providers a session really gets here (the wheel offers CUDA and TensorRT
    whether or not there is a GPU). Without a CUDA device neither has anything to run on (and a try
    logs a warning per provider); with one, each is tried, TensorRT only where CUDA loads, as it
    runs on CUDA's."""
    if not torch.cuda.is_available():
        return ["CPUExecutionProvider"]
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["x"], ["y"])], "probe",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 21)], ir_version=10).SerializeToString()
    offered, loading = ort.get_available_providers(), []
    for provider in [p for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") if p in offered]:
        if provider == "TensorrtExecutionProvider" and "CUDAExecutionProvider" not in loading:
            continue
        options = ort.SessionOptions()
        options.log_severity_level = 3  # the fallback's warning is the answer, not news
        if ort.InferenceSession(model, options, providers=[provider]).get_providers()[0] == provider:
            loading.append(provider)
    return [*loading, "CPUExecutionProvider"]


def _aoti_summary(folder) -> dict | None:
    """What `make export` measured of the AOTInductor package: compile time, options, cold starts."""
    try:
        aoti = read_export(folder).aoti
    except PipelineError:
        return None  # the `exported` fixture fails the run with the reason
    return {k: aoti[k] for k in ("seconds", "inductor_configs", "models", "cpu_isa", "cold_start")}


def _tuning_summary(folder) -> dict | None:
    """variant -> batch size -> the options `make tune` chose there (what differs from ORT's defaults)."""
    if not (folder / artifacts.ORT_TUNING).exists():
        return None
    try:
        tuning = read_tuning(folder)
    except PipelineError:
        return None  # the `exported` fixture fails the run with the reason
    return {variant: {size: choice.summary for size, choice in sizes.items()} for variant, sizes in tuning.variants.items()}


def _precision_choices(device_option: str) -> dict[str, dict]:
    """What `auto` picks on each device measured here, with the reason (as training prints it)."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and device_option != "cpu" else [])
    return {d: dataclasses.asdict(resolve_precision("auto", torch.device(d))) for d in devices}


def _gpu_info() -> dict | None:
    if not torch.cuda.is_available():
        return None
    query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
    try:
        driver = subprocess.run(query, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as err:
        driver = f"unknown ({type(err).__name__})"
    return {"name": torch.cuda.get_device_name(0), "driver": driver, "count": torch.cuda.device_count()}
