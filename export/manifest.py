"""`manifest.json`: every artifact with its sha256 and size, what produced it, and the verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from export.to_onnx import MODEL_VERSION, OPSET
from pipeline.atomic import write_json
from pipeline.digest import sha256_file
from pipeline.provenance import hardware, library_versions

# artifact -> the command that writes it
PRODUCERS = {
    "model.pt": "python -m pipeline.train",
    "train_metrics.json": "python -m pipeline.train",
    "model.torchscript.pt": "python -m export",
    "model.onnx": "python -m export",
    "export_report.json": "python -m export",
    "parity.json": "python -m export.parity",
    "parity.md": "python -m export.parity",
}
EXPORT_MODULES = ("onnx", "onnxruntime", "onnxscript")


def write_manifest(out: Path, parity: dict[str, Any], parity_config: dict[str, Any], train_config: dict[str, Any]) -> None:
    artifacts = {
        name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size, "produced_by": command}
        for name, command in PRODUCERS.items()
    }
    write_json(
        out / "manifest.json",
        {
            "artifacts": artifacts,
            "config": {
                "train": train_config,
                "export": {"onnx_opset": OPSET, "model_version": MODEL_VERSION},
                "parity": parity_config,
            },
            "versions": library_versions(*EXPORT_MODULES),
            "device": parity["device"],
            "hardware": hardware(torch.device(parity["device"])),
            "parity": {
                "passed": parity["passed"],
                "reference": parity["reference"],
                "pairs": {p["candidate"]: "passed" if p["passed"] else "failed" for p in parity["pairs"]},
                "skipped": {name: b["reason"] for name, b in parity["backends"].items() if b["status"] == "skipped"},
            },
        },
    )
