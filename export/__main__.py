"""Export `model.pt` as TorchScript and ONNX, both with the softmax head.

Usage:
    python -m export [--artifacts DIR]
    make export                       # also runs the parity gate (python -m export.parity)

Reads <artifacts>/model.pt; writes <artifacts>/model.torchscript.pt, <artifacts>/model.onnx and
<artifacts>/export_report.json (timings, opset, checker verdict, recorded upstream warnings).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from export.head import load_head
from export.to_onnx import export_onnx
from export.to_torchscript import export_torchscript
from handoff import artifacts
from handoff.atomic import write_json
from handoff.cli import run_cli
from handoff.manifest import record, verify


@dataclass(frozen=True)
class ExportConfig:
    artifacts: str = field(default="artifacts", metadata={"help": "folder holding model.pt; outputs go here"})


def run(config: ExportConfig) -> None:
    out = Path(config.artifacts)
    checkpoint = out / artifacts.MODEL
    checkpoint_sha256 = verify(out, [artifacts.MODEL])[artifacts.MODEL]
    head, payload = load_head(checkpoint)
    report = {
        "source_checkpoint": {"file": checkpoint.name, "sha256": checkpoint_sha256},
        "torchscript": export_torchscript(head, payload, out / artifacts.TORCHSCRIPT),
        "onnx": export_onnx(head, payload, checkpoint_sha256, out / artifacts.ONNX),
    }
    write_json(out / artifacts.EXPORT_REPORT, report)
    record(out, [artifacts.TORCHSCRIPT, artifacts.ONNX, artifacts.EXPORT_REPORT], "python -m export")
    for kind in ("torchscript", "onnx"):
        entry = report[kind]
        print(f"{out / entry['file']}: {entry['method']}, {entry['seconds']:.1f} s, {len(entry['warnings'])} warnings recorded")


def main(argv: list[str] | None = None) -> int:
    return run_cli(ExportConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
