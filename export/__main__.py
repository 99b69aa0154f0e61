"""Export `model.pt` with the softmax head: TorchScript, an ExportedProgram, an AOTInductor package
and ONNX.

Usage:
    python -m export [--artifacts DIR] [--device auto|cpu|cuda]
    make export                       # also runs the parity gate (python -m export.parity)

Reads <artifacts>/model.pt; writes <artifacts>/model.torchscript.pt (while this torch has
TorchScript), model.pt2 (torch.export), model.aoti.pt2 (AOTInductor, compiled for --device: the
GPU where there is one), model.onnx and export_report.json (timings, the package's CPU and cold
start, opset, checker verdict, recorded upstream warnings).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from export.aoti_package import INPUT_SHAPE
from export.head import load_head
from export.to_aoti import export_aoti
from export.to_exported import export_program
from export.to_onnx import export_onnx, metadata_props
from export.to_torchscript import export_torchscript
from handoff import artifacts
from handoff.atomic import write_json
from handoff.cli import run_cli
from handoff.errors import PipelineError
from handoff.manifest import record, verify
from handoff.reports import TORCHSCRIPT_WRITTEN
from pipeline.placement import resolve_device

EXPORTS = ("torchscript", "exported_program", "aoti", "onnx")  # the report's entries, one per artifact
# What the manifest's "exports" section keeps of each entry: what a deployer must match to use the file.
PROVENANCE = ("method", "torch", "device", "cpu_isa", "cpu_isa_flags", "cpu_model", "opset")


@dataclass(frozen=True)
class ExportConfig:
    artifacts: str = field(default="artifacts", metadata={"help": "folder holding model.pt; outputs go here"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda: the device the AOTInductor package is compiled for"})
    autotune: str = field(default="on", metadata={"help": "on | off: time the package's matmul kernels while compiling (export/to_aoti.py)"})

    def __post_init__(self) -> None:
        if self.autotune not in ("on", "off"):
            raise PipelineError(f"--autotune {self.autotune!r}: choose on or off")


def run(config: ExportConfig) -> None:
    out = Path(config.artifacts)
    checkpoint = out / artifacts.MODEL
    checkpoint_sha256 = verify(out, [artifacts.MODEL])[artifacts.MODEL]
    head, payload = load_head(checkpoint)
    metadata = {**metadata_props(payload, checkpoint_sha256), INPUT_SHAPE: ",".join(map(str, payload["input_shape"]))}
    torchscript = export_torchscript(head, payload, out / artifacts.TORCHSCRIPT)
    exported = export_program(head, metadata, payload, out / artifacts.EXPORTED_PROGRAM)
    report = {
        "source_checkpoint": {"file": checkpoint.name, "sha256": checkpoint_sha256},
        "torchscript": torchscript,
        "exported_program": exported,
        "aoti": export_aoti(head, payload, metadata, resolve_device(config.device), config.autotune == "on",
                            out / artifacts.AOTI_PACKAGE),
        "onnx": export_onnx(head, payload, checkpoint_sha256, out / artifacts.ONNX),
    }
    write_json(out / artifacts.EXPORT_REPORT, report)
    exports = [report[kind] for kind in EXPORTS]
    record(out, [*(e["file"] for e in exports if e["file"]), artifacts.EXPORT_REPORT], "python -m export",
           dropping=[] if torchscript["status"] == TORCHSCRIPT_WRITTEN else [artifacts.TORCHSCRIPT],
           exports={e["file"]: {k: e[k] for k in PROVENANCE if k in e} for e in exports if e["file"]})
    if torchscript["status"] != TORCHSCRIPT_WRITTEN:
        print(f"TorchScript is unavailable in torch {exported['torch']} ({torchscript['reason']}): "
              f"{artifacts.EXPORTED_PROGRAM} and {artifacts.AOTI_PACKAGE} are the torch artifacts")
    for entry in exports:
        if entry["file"]:
            print(f"{out / entry['file']}: {entry['method']}, {entry['seconds']:.1f} s, {len(entry['warnings'])} warnings recorded")
    aoti = report["aoti"]
    print(f"{out / artifacts.AOTI_PACKAGE}: compiled for {aoti['device']} ({aoti['cpu_isa']}); cold start in a fresh process:")
    for way, cold in aoti["cold_start"].items():
        print(f"  {way}: {cold['total']:.2f} s (import torch {cold['import_torch']:.2f} s, load {cold['load']:.3f} s, "
              f"first call {cold['first_call'] * 1e3:.1f} ms)")


def main(argv: list[str] | None = None) -> int:
    return run_cli(ExportConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
