"""Library versions and hardware, saved next to every number and artifact."""

from __future__ import annotations

import importlib
import platform

import numpy
import torch


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


def cpu_model() -> str:
    """The CPU's marketing name (Linux), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: fall through to platform's answer
    return platform.processor() or platform.machine()


def hardware(device: torch.device) -> dict[str, str | int]:
    info: dict[str, str | int] = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
