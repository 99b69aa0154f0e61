"""Typed readers for the stage reports, so later stages (the model card, the bundle, the bench, the
server) read fields, not string keys scattered through their code. Each reader takes the artifacts
folder; a missing or malformed report is a one-line PipelineError naming the file and the stage
that writes it. The writers are the stages themselves:

    train_metrics.json   python -m pipeline.train    TrainReport
    export_report.json   python -m export            ExportReport
    parity.json          python -m export.parity     ParityReport
    variants.json        python -m export.variants   VariantsReport
    ort_tuning.json      python -m export.tune       TuningReport
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from handoff import artifacts
from handoff.errors import PipelineError


def _load(folder: Path, name: str, build) -> Any:
    """Parse folder/name with `build(dict)`; every failure is one line naming the file."""
    path = Path(folder) / name
    try:
        return build(json.loads(path.read_text()))
    except FileNotFoundError as err:
        raise PipelineError(f"{path}: not found; run `{artifacts.MADE_BY[name]}`") from err
    except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
        raise PipelineError(f"{path}: not a report this code reads ({type(err).__name__}: {err}); "
                            f"delete it and run `{artifacts.MADE_BY[name]}`") from err


@dataclass(frozen=True)
class TrainReport:
    dataset: str
    held_out: str  # the split the metrics are on: "test" (MNIST) | "validation" (Otto)
    accuracy: float  # held-out accuracy of the saved weights
    metrics: dict[str, float]  # held-out metrics by their record names, e.g. test_accuracy, test_loss
    recipe: dict[str, Any]  # the resolved Recipe's fields (pipeline.config.Recipe)
    epochs: float
    seed: int
    device: str
    precision: dict[str, Any]  # requested, dtype, native, reason (pipeline.placement.Precision)
    train_seconds: float
    cpu: str
    versions: dict[str, str | None]
    data: dict[str, Any]  # split sizes, seeds, the source file

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TrainReport:
        accuracy_key, loss_key = d["accuracy_metric"], d["loss_metric"]
        return cls(d["dataset"], d["held_out"], d[accuracy_key], {accuracy_key: d[accuracy_key], loss_key: d[loss_key]},
                   d["config"]["recipe"], d["epochs"], d["seed"], d["device"], d["precision"], d["train_seconds"],
                   d["hardware"]["cpu"], d["versions"], d["data"])


@dataclass(frozen=True)
class ParityPair:
    candidate: str  # e.g. ort-cpu, against the report's reference (eager-cpu)
    passed: bool
    max_abs: float
    max_rel: float
    agreeing: int  # held-out rows whose argmax equals the reference's, summed over the batch sizes
    rows: int  # held-out rows compared, summed over the batch sizes


@dataclass(frozen=True)
class ParityReport:
    passed: bool
    failures: list[str]
    reference: str
    abs_tolerance: float
    rel_tolerance: float
    inputs: dict[str, int]  # input set -> rows (the labelled held-out set first, then random inputs)
    batch_sizes: list[int]
    labelled_set: str
    pairs: list[ParityPair]

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ParityReport:
        labelled = d["labelled_set"]
        pairs = []
        for p in d["pairs"]:
            held_out = [c for case, c in p["by_case"].items() if case.startswith(f"{labelled}@")]
            pairs.append(ParityPair(p["candidate"], p["passed"], p["max_abs"], p["max_rel"],
                                    sum(c["argmax_agree"] for c in held_out), sum(c["images"] for c in held_out)))
        return cls(d["passed"], d["failures"], d["reference"], d["tolerances"]["abs"], d["tolerances"]["rel"],
                   d["inputs"], d["batch_sizes"], labelled, pairs)


# export_report.json's TorchScript status: "written", or "unavailable" (this torch refuses TorchScript)
TORCHSCRIPT_WRITTEN, TORCHSCRIPT_UNAVAILABLE = "written", "unavailable"


@dataclass(frozen=True)
class ExportReport:
    source_sha256: str  # the model.pt the exports were made from
    torch_files: list[str]  # the torch-side artifacts written: TorchScript (while torch has it), model.pt2, model.aoti.pt2
    torchscript_missing: str | None  # why there is no TorchScript file (None: there is one)
    aoti: dict[str, Any]  # the package's entry: compile seconds, options, size hint, device, CPU, cold start

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExportReport:
        torchscript = d["torchscript"]
        written = torchscript["status"] == TORCHSCRIPT_WRITTEN
        torch_files = [*([artifacts.TORCHSCRIPT] if written else []), artifacts.EXPORTED_PROGRAM, artifacts.AOTI_PACKAGE]
        missing = None if written else f"this torch refuses TorchScript ({torchscript['reason']})"
        return cls(d["source_checkpoint"]["sha256"], torch_files, missing, d["aoti"])


GATE_FIELDS = ("accuracy", "reference_accuracy", "agreement", "max_abs", "tolerance")  # of a variant's gate check


@dataclass(frozen=True)
class VariantEntry:
    file: str
    method: str  # the tool that made it
    passed: bool
    checks: dict[str, dict[str, Any]]  # device -> {"status": "ran", GATE_FIELDS..., "by_batch"} or {"status": "skipped", "reason"}

    def gate(self) -> dict[str, Any] | None:
        """The first check that ran (the CPU's comes first): its GATE_FIELDS; None for the reference."""
        ran = [check for check in self.checks.values() if check.get("status") == "ran"]
        return {key: ran[0][key] for key in GATE_FIELDS} if ran else None


@dataclass(frozen=True)
class VariantsReport:
    passed: bool
    failures: list[str]  # of the deployable variants
    baseline_failures: list[str]  # of the int8-dynamic baseline (marked failed, not fatal)
    dataset: str
    held_out: str
    variants: dict[str, VariantEntry]  # in artifacts.VARIANT_FILES order: fp32 (the reference) first

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VariantsReport:
        known = list(artifacts.VARIANT_FILES)
        names = sorted(d["variants"], key=lambda name: (known.index(name) if name in known else len(known), name))
        variants = {name: VariantEntry(**{k: d["variants"][name][k] for k in ("file", "method", "passed", "checks")})
                    for name in names}
        return cls(d["passed"], d["failures"], d.get("baseline_failures", []), d["dataset"], d["held_out"], variants)

    def reference_accuracy(self) -> float | None:
        """fp32's held-out accuracy as the gate measured it (ONNX Runtime), if any variant ran."""
        measured = [entry.gate()["reference_accuracy"] for entry in self.variants.values() if entry.gate()]
        return measured[0] if measured else None

    def why_failed(self, variant: str) -> str:
        missed = self.failures + self.baseline_failures
        return next((f for f in missed if f.startswith(f"{variant} (")), "see the report")


@dataclass(frozen=True)
class TunedChoice:
    options: dict[str, Any]  # the options record (handoff.ort_options)
    summary: str  # what differs from ORT's defaults, in words
    p50_us: float
    default_p50_us: float


@dataclass(frozen=True)
class TuningReport:
    cpu: dict[str, Any]  # model, cores, flags: where the choices were measured
    variants: dict[str, dict[str, TunedChoice]]  # variant -> batch size (str) -> choice

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TuningReport:
        variants = {name: {size: TunedChoice(t["options"], t["summary"], t["p50_us"], t["default_p50_us"])
                           for size, t in entry["batch_sizes"].items()}
                    for name, entry in d["variants"].items()}
        return cls(d["cpu"], variants)

    def records(self, variant: str) -> dict[str, dict[str, Any]]:
        """batch size -> {"options": record} for `variant`, as SessionPool takes it; {}: untuned."""
        return {size: {"options": choice.options} for size, choice in self.variants.get(variant, {}).items()}


def read_train(folder: Path) -> TrainReport:
    return _load(folder, artifacts.TRAIN_METRICS, TrainReport.from_json)


def read_export(folder: Path) -> ExportReport:
    return _load(folder, artifacts.EXPORT_REPORT, ExportReport.from_json)


def read_parity(folder: Path) -> ParityReport:
    return _load(folder, artifacts.PARITY, ParityReport.from_json)


def read_variants(folder: Path) -> VariantsReport:
    return _load(folder, artifacts.VARIANTS, VariantsReport.from_json)


def read_tuning(folder: Path) -> TuningReport:
    return _load(folder, artifacts.ORT_TUNING, TuningReport.from_json)
