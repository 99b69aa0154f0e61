"""Library versions and hardware, saved next to every number and artifact (the torch side of
handoff.cpu)."""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
import sys

import numpy
import torch

from handoff.cpu import cpu_flags, cpu_model


def library_versions(*modules: str) -> dict[str, str | None]:
    """Python, torch, torchvision, numpy and CUDA versions, plus those of the named modules."""
    versions = {
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # TorchVersion would not load with weights_only=True
        "torchvision": module_version("torchvision"),
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
    }
    return versions | {name: module_version(name) for name in modules}


def module_version(module: str) -> str:
    """A module's version without importing it where its distribution has its name (importing
    torchvision only to read its version cost 2.5 s of every training run and parity gate)."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        return str(loaded.__version__)
    try:
        return importlib.metadata.version(module)
    except importlib.metadata.PackageNotFoundError:  # e.g. onnxruntime, installed as onnxruntime-gpu
        return str(importlib.import_module(module).__version__)


def cpu_dispatch() -> dict[str, object]:
    """The CPU's speed flags and oneDNN cap, plus the instruction set ATen dispatches to."""
    return {**cpu_flags(), "aten_capability": torch.backends.cpu.get_cpu_capability()}


def hardware(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_dispatch(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
