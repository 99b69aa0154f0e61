"""TorchScript export of the softmax head (torch.jit.script), with upstream warnings recorded.

TorchScript is deprecated upstream (a DeprecationWarning in torch 2.11-2.13, a FutureWarning from
2.14, the same text) but still shipped because users ask for it: the warnings go into the export
report and to stderr, whatever their class, and are not fatal. Where this torch refuses to script or
save (TorchScript removed, or turned into an error), there is no TorchScript artifact: the entry says
why, any earlier file is removed, and the ExportedProgram and AOTInductor package are the torch
artifacts (export/__main__.py).
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
from handoff.reports import TORCHSCRIPT_UNAVAILABLE, TORCHSCRIPT_WRITTEN


def export_torchscript(head: SoftmaxHead, payload: dict[str, Any], path: Path) -> dict[str, Any]:
    """Script `head` and save it to `path` atomically, with the checkpoint's contract as metadata;
    returns the report entry: status "written", or "unavailable" with the reason."""
    metadata = {"dataset": payload["dataset"], "classes": payload["classes"], "input_name": payload["input_name"],
                **contract_text(payload)}
    started = time.perf_counter()
    with recording_warnings() as recorded:
        try:
            scripted = torch.jit.script(head)
            with atomic_path(path) as tmp:
                torch.jit.save(scripted, str(tmp), _extra_files={"metadata.json": json.dumps(metadata)})
        except PipelineError:
            raise  # the disk refused the file: not TorchScript's doing
        except Exception as err:  # this torch refuses TorchScript: no artifact, and none left from before
            path.unlink(missing_ok=True)
            return {"file": None, "status": TORCHSCRIPT_UNAVAILABLE, "reason": first_line(err), "warnings": recorded}
    return {
        "file": path.name,
        "status": TORCHSCRIPT_WRITTEN,
        "method": "torch.jit.script",
        "seconds": time.perf_counter() - started,
        "warnings": recorded,
    }

