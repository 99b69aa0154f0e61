"""TorchScript export of the softmax head (torch.jit.script), with upstream warnings recorded.

TorchScript is deprecated upstream (FutureWarning since torch 2.10) but still shipped because
users ask for it: the warnings go into the export report and to stderr, and are not fatal.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from export.head import SoftmaxHead
from export.recorded_warnings import recording_warnings
from pipeline.atomic import atomic_path
from pipeline.errors import PipelineError, first_line


def export_torchscript(head: SoftmaxHead, path: Path) -> dict[str, Any]:
    """Script `head` and save it to `path` atomically; returns the report entry."""
    started = time.perf_counter()
    with recording_warnings() as recorded:
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
        "warnings": recorded,
    }

