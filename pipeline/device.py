"""Choose the torch device once, at the edge; asking for CUDA without CUDA is an error."""

from __future__ import annotations

import torch

from pipeline.handoff.errors import PipelineError


def resolve_device(requested: str) -> torch.device:
    """'auto' takes CUDA when available, else CPU; 'cuda' or 'cuda:N' must really exist."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cpu":
        return torch.device("cpu")
    if requested == "cuda" or requested.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise PipelineError(
                f"DEVICE={requested} was asked for, but CUDA is not available "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}, "
                f"{torch.cuda.device_count()} GPUs visible); use DEVICE=cpu or DEVICE=auto"
            )
        device = torch.device(requested)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PipelineError(f"DEVICE={requested}: only {torch.cuda.device_count()} GPUs visible")
        return device
    raise PipelineError(f"unknown DEVICE={requested!r}; use auto, cpu, cuda or cuda:N")
