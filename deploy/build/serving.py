"""Which model files a bundle carries and how each runs, torch-free (the bundle builder's serving sections).

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

from pathlib import Path
from typing import Any

from handoff import artifacts
from handoff.artifacts import ONNX, REFERENCE_VARIANT
from handoff.errors import PipelineError
from handoff.manifest import verify
from handoff.reports import TrainReport, TuningReport, VariantEntry, VariantsReport, read_tuning, read_variants


def read_variant_records(out: Path, variant: str) -> tuple[VariantsReport, TuningReport]:
    """(variants.json, ort_tuning.json), verified; refuses a `variant` that is unknown or failed its gate."""
    verify(out, [artifacts.VARIANTS, artifacts.ORT_TUNING])  # a missing one names the make target that writes it
    report, tuning = read_variants(out), read_tuning(out)
    entries = report.variants
    passed = (name for name, entry in entries.items() if entry.passed)
    choices = ", ".join(sorted(passed, key=lambda n: (n != REFERENCE_VARIANT, n)))
    if variant not in entries:
        raise PipelineError(f"unknown variant {variant!r}; {out / artifacts.VARIANTS} offers: {choices}")
    if not entries[variant].passed:
        raise PipelineError(f"variant {variant!r} failed its gate ({report.why_failed(variant)}); choose one that passed: {choices}")
    if entries[REFERENCE_VARIANT].file != ONNX:
        raise PipelineError(f"{out / artifacts.VARIANTS}: the fp32 reference is {entries[REFERENCE_VARIANT].file}, expected {ONNX}")
    verify(out, [entries[variant].file])
    return report, tuning


def sections(report: VariantsReport, tuning: TuningReport, variant: str, train: TrainReport) -> dict[str, Any]:
    """The bundle manifest's serving sections (module docstring) for default `variant`."""
    names = [REFERENCE_VARIANT] + ([variant] if variant != REFERENCE_VARIANT else [])
    # fp32's accuracy as the gate measured it (ONNX Runtime, the same held-out rows as the variants'),
    # else the training run's held-out accuracy (eager PyTorch).
    measured = report.reference_accuracy()
    reference_accuracy = measured if measured is not None else train.accuracy
    return {
        "default_variant": variant,
        "variants": {name: _summary(name, report.variants[name], reference_accuracy) for name in names},
        "ort_options": {name: {size: choice.options for size, choice in tuning.variants[name].items()}
                        for name in names if name in tuning.variants},
        "ort_tuning_cpu": tuning.cpu,
    }


def _summary(name: str, entry: VariantEntry, reference_accuracy: float | None) -> dict[str, Any]:
    if name == REFERENCE_VARIANT:
        return {"file": entry.file, "method": entry.method, "accuracy": reference_accuracy,
                "reference_accuracy": reference_accuracy, "agreement": 1.0, "max_abs": 0.0, "passed": True, "tolerance": None}
    return {"file": entry.file, "method": entry.method, **entry.gate(), "passed": entry.passed}  # a passed variant ran a check
