"""TorchScript export of the softmax head (torch.jit.script), with upstream warnings recorded.

TorchScript is deprecated upstream (FutureWarning since torch 2.10) but still shipped because
users ask for it: the warnings go into the export report and to stderr, and are not fatal.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import torch

from export.head import SoftmaxHead
from pipeline.atomic import atomic_path
from pipeline.errors import PipelineError, first_line


def export_torchscript(head: SoftmaxHead, path: Path) -> dict[str, Any]:
    """Script `head` and save it to `path` atomically; returns the report entry."""
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            scripted = torch.jit.script(head)
            with atomic_path(path) as tmp:
                torch.jit.save(scripted, str(tmp))
        except Exception as err:  # any failure to script or save means no artifact: report why
            raise PipelineError(f"TorchScript export failed: {first_line(err)}") from err
    return {
        "file": path.name,
        "method": "torch.jit.script",
        "seconds": time.perf_counter() - started,
        "warnings": recorded_warnings(caught),
    }


def recorded_warnings(caught: list[warnings.WarningMessage]) -> list[dict[str, str]]:
    """Warnings as report entries, each also shown on stderr so nothing is hidden."""
    entries = []
    for w in caught:
        entries.append({"category": w.category.__name__, "message": str(w.message), "source": f"{w.filename}:{w.lineno}"})
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    return entries
