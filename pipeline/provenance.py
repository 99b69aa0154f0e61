"""Library versions and hardware, saved next to every number and artifact (the torch side of
handoff.cpu)."""

from __future__ import annotations

import importlib
import platform

import numpy
import torch

from handoff.cpu import cpu_flags, cpu_model


def library_versions(*modules: str) -> dict[str, str | None]:
    """Python, torch, torchvision, numpy and CUDA versions, plus those of the named modules."""
    import torchvision

    versions = {
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # TorchVersion would not load with weights_only=True
        "torchvision": str(torchvision.__version__),
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
    }
    for name in modules:
        versions[name] = str(importlib.import_module(name).__version__)
    return versions


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
