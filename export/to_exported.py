"""torch.export of the softmax head: an ExportedProgram with a dynamic batch, saved as `model.pt2`.

`torch.export.load(path).module()` runs it in any Python with torch, without this project or the
model's source. It is also what AOTInductor compiles (export/to_aoti.py). The archive carries the
model contract and provenance as `metadata.json` (the ONNX file's metadata keys):
`torch.export.load(path, extra_files={"metadata.json": ""})` fills it in.

The example batch has 8 rows: an example of 1 (or a Dim with min=2) would fix or limit the batch
dimension (pytorch/pytorch#133653); the parity gate runs it at batches 1, 2, 64 and 1024.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from export.head import SoftmaxHead, example_batch
from export.recorded_warnings import recording_warnings
from handoff.atomic import atomic_path
from handoff.errors import PipelineError, first_line

METADATA_FILE = "metadata.json"  # the archive's extra file holding the contract


def export_head(head: SoftmaxHead, payload: dict[str, Any], device: torch.device, rows: int = 8,
                dynamic: bool = True) -> torch.export.ExportedProgram:
    """`head` (already on `device`) exported with a dynamic batch dimension, from an example of
    `rows` rows (the size a compiler takes as the batch's hint); with `dynamic` False, for a batch
    of exactly `rows` rows."""
    example = example_batch(payload, batch_size=rows).to(device)
    shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
    return torch.export.export(head, (example,), dynamic_shapes=shapes)


def export_program(head: SoftmaxHead, metadata: dict[str, str], payload: dict[str, Any], path: Path) -> dict[str, Any]:
    """Export `head` (on the CPU) and save it to `path` atomically, `metadata` inside; returns the
    report entry."""
    started = time.perf_counter()
    with recording_warnings() as recorded:
        try:
            program = export_head(head, payload, torch.device("cpu"))
            with atomic_path(path, suffix=".pt2") as tmp:  # torch.export.save warns about any other name
                torch.export.save(program, str(tmp), extra_files={METADATA_FILE: json.dumps(metadata)})
        except PipelineError:
            raise
        except Exception as err:  # any exporter failure means no artifact: report why
            raise PipelineError(f"torch.export failed: {first_line(err)}") from err
    return {
        "file": path.name,
        "method": "torch.export.export + torch.export.save",
        "seconds": time.perf_counter() - started,
        "torch": str(torch.__version__),
        "warnings": recorded,
    }
