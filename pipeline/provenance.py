"""Library versions and hardware, saved next to every number and artifact."""

from __future__ import annotations

import importlib
import os
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


# The /proc/cpuinfo flags that decide this model's speed: vector width, bf16 and int8 dot products.
SPEED_FLAGS = (
    "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8",
)
# The ones that give int8 dot products (VNNI or AMX): without them ORT advises reduce_range for int8.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def _cpuinfo_field(name: str) -> str | None:
    """The first `name : value` line of /proc/cpuinfo (Linux), else None."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.split(":", 1)[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: the callers fall back
    return None


def cpu_model() -> str:
    """The CPU's marketing name (Linux), else what `platform` knows."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_flags() -> dict[str, object]:
    """Which of SPEED_FLAGS the CPU has, what ATen dispatches to, and the oneDNN ISA cap if set."""
    flags = set((_cpuinfo_field("flags") or "").split())
    return {
        "present": [f for f in SPEED_FLAGS if f in flags],
        "absent": [f for f in SPEED_FLAGS if f not in flags],
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
    }


def hardware(device: torch.device) -> dict[str, object]:
    info: dict[str, object] = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
