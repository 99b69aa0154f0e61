"""Which model files a bundle carries and how each runs, torch-free (deploy.build uses it).

Reads the variants' gate report (`variants.json`, from `make export`) and the ONNX Runtime options
chosen by measurement (`ort_tuning.json`, from `make tune`), both checked against the artifacts'
manifest.json, and turns them into the bundle manifest's serving sections:
    "default_variant"   the variant mlp-predict, mlp-serve and Triton use unless told otherwise
    "variants"          name -> {file, method, accuracy, reference_accuracy, agreement, max_abs,
                        passed, tolerance}, for the files in the bundle (fp32 always: the reference)
    "ort_options"       variant -> batch size -> options record, for the bundled variants `make tune` timed
    "ort_tuning_cpu"    the CPU those options were measured on
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deploy.bundle import MODEL_FILE, REFERENCE
from pipeline.errors import PipelineError
from pipeline.manifest import verify

VARIANTS_FILE = "variants.json"
TUNING_FILE = "ort_tuning.json"
MADE_BY = {VARIANTS_FILE: "make export", TUNING_FILE: "make tune"}
GATE_KEYS = ("accuracy", "reference_accuracy", "agreement", "max_abs", "tolerance")


def read_sources(out: Path, variant: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(variants.json, ort_tuning.json), verified; refuses a `variant` that is unknown or failed its gate."""
    for name, stage in MADE_BY.items():
        if not (out / name).is_file():  # verify() would say so too, but not which make target writes it
            raise PipelineError(f"{out / name}: not found; run `{stage}` before `make deploy`")
    verify(out, list(MADE_BY))
    report = json.loads((out / VARIANTS_FILE).read_text())
    tuning = json.loads((out / TUNING_FILE).read_text())
    entries = report["variants"]
    choices = ", ".join(sorted((name for name, entry in entries.items() if entry["passed"]), key=lambda n: (n != REFERENCE, n)))
    if variant not in entries:
        raise PipelineError(f"unknown variant {variant!r}; {out / VARIANTS_FILE} offers: {choices}")
    if not entries[variant]["passed"]:
        missed = report["failures"] + report.get("baseline_failures", [])
        why = next((f for f in missed if f.startswith(f"{variant} (")), "see the report")
        raise PipelineError(f"variant {variant!r} failed its gate ({why}); choose one that passed: {choices}")
    if entries[REFERENCE]["file"] != MODEL_FILE:
        raise PipelineError(f"{out / VARIANTS_FILE}: the fp32 reference is {entries[REFERENCE]['file']}, expected {MODEL_FILE}")
    verify(out, [entries[variant]["file"]])
    return report, tuning


def serving(report: dict[str, Any], tuning: dict[str, Any], variant: str, train: dict[str, Any]) -> dict[str, Any]:
    """The bundle manifest's serving sections (module docstring) for default `variant`."""
    names = [REFERENCE] + ([variant] if variant != REFERENCE else [])
    entries = report["variants"]
    # fp32's accuracy as the gate measured it (ONNX Runtime, the same held-out rows as the variants'),
    # else the training run's held-out accuracy (eager PyTorch).
    measured = [check["reference_accuracy"] for entry in entries.values() for check in _ran(entry)]
    reference_accuracy = measured[0] if measured else train.get(f"{train['held_out']}_accuracy")
    return {
        "default_variant": variant,
        "variants": {name: _summary(name, entries[name], reference_accuracy) for name in names},
        "ort_options": {name: {size: chosen["options"] for size, chosen in tuning["variants"][name]["batch_sizes"].items()}
                        for name in names if name in tuning["variants"]},
        "ort_tuning_cpu": tuning["cpu"],
    }


def _ran(entry: dict[str, Any]) -> list[dict[str, Any]]:
    return [check for check in entry["checks"].values() if check.get("status") == "ran"]


def _summary(name: str, entry: dict[str, Any], reference_accuracy: float | None) -> dict[str, Any]:
    if name == REFERENCE:
        return {"file": entry["file"], "method": entry["method"], "accuracy": reference_accuracy,
                "reference_accuracy": reference_accuracy, "agreement": 1.0, "max_abs": 0.0, "passed": True, "tolerance": None}
    check = _ran(entry)[0]  # a passed variant ran at least one check; the CPU's comes first
    return {"file": entry["file"], "method": entry["method"], **{key: check[key] for key in GATE_KEYS},
            "passed": entry["passed"]}
