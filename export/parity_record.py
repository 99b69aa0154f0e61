"""What the parity stage adds to `manifest.json` once the gate has run: configs, versions, device, verdict.

The per-file entries (sha256, size, producer) are recorded by each stage as it writes its files
(handoff.manifest.record); this adds the parity files and what a deployer needs to trust them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from export.to_onnx import MODEL_VERSION, OPSET
from handoff import artifacts
from handoff.manifest import record
from pipeline.provenance import hardware, library_versions

EXPORT_MODULES = ("onnx", "onnxruntime", "onnxscript")


def record_parity(out: Path, parity: dict[str, Any], parity_config: dict[str, Any], train_config: dict[str, Any]) -> None:
    record(
        out,
        [artifacts.PARITY, artifacts.PARITY_MD, artifacts.HELD_OUT, artifacts.HELD_OUT_PROBS],
        "python -m export.parity",
        config={
            "train": train_config,
            "export": {"onnx_opset": OPSET, "model_version": MODEL_VERSION},
            "parity": parity_config,
        },
        versions=library_versions(*EXPORT_MODULES),
        device=parity["device"],
        hardware=hardware(torch.device(parity["device"])),
        parity={
            "passed": parity["passed"],
            "reference": parity["reference"],
            "pairs": {p["candidate"]: "passed" if p["passed"] else "failed" for p in parity["pairs"]},
            "skipped": {name: b["reason"] for name, b in parity["backends"].items() if b["status"] == "skipped"},
        },
    )
