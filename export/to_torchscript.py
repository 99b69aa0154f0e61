"""TorchScript export of the softmax head (torch.jit.script), with upstream warnings recorded.

TorchScript is deprecated upstream (a DeprecationWarning in torch 2.11-2.13, a FutureWarning from
2.14, the same text) but still shipped because users ask for it: the warnings go into the export
report and to stderr, whatever their class, and are not fatal.
The archive carries `metadata.json` (class names, input name and contract) as an extra file:
`torch.jit.load(path, _extra_files={"metadata.json": ""})` fills it in.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from export.head import SoftmaxHead, contract_text
from export.recorded_warnings import recording_warnings
from handoff.atomic import atomic_path
from handoff.errors import PipelineError, first_line


def export_torchscript(head: SoftmaxHead, payload: dict[str, Any], path: Path) -> dict[str, Any]:
    """Script `head` and save it to `path` atomically, with the checkpoint's contract as metadata;
    returns the report entry."""
    metadata = {"dataset": payload["dataset"], "classes": payload["classes"], "input_name": payload["input_name"],
                **contract_text(payload)}
    started = time.perf_counter()
    with recording_warnings() as recorded:
        try:
            scripted = torch.jit.script(head)
            with atomic_path(path) as tmp:
                torch.jit.save(scripted, str(tmp), _extra_files={"metadata.json": json.dumps(metadata)})
        except Exception as err:  # any failure to script or save means no artifact: report why
            raise PipelineError(f"TorchScript export failed: {first_line(err)}") from err
    return {
        "file": path.name,
        "method": "torch.jit.script",
        "seconds": time.perf_counter() - started,
        "warnings": recorded,
    }

