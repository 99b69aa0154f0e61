"""Parity gate: every runtime must compute the same function as the eager PyTorch head.

Usage:
    python -m export.parity [--artifacts DIR] [--device auto|cpu|cuda] [--data-dir DIR] [--mnist-mirror DIR]
                            [--otto-csv FILE]

Runs eager PyTorch, TorchScript (while this torch has it), the ExportedProgram (model.pt2), the
AOTInductor package (model.aoti.pt2, on the device it was compiled for) and ONNX Runtime (CPU; on
CUDA also their CUDA versions, TF32 off)
over the model's dataset's held-out split (MNIST: the full test set; Otto: the validation rows)
and seeded random inputs in the contract's range (MNIST: [0, 1] images; Otto: sparse counts), at
batch sizes the export never saw.
Checks, in order: output shapes and dtypes (and ONNX input/output names); rows sum to 1; max
absolute and relative error against the tolerances below; argmax agreement on every image.
Writes <artifacts>/parity.json (top-level "passed"), <artifacts>/parity.md, the held-out rows it
judged (<artifacts>/held_out.npz, for the stages after it), the reference's probabilities on them
(<artifacts>/held_out_probs.idx, for the C++ loader) and <artifacts>/manifest.json; a failure
exits non-zero naming the pair, batch size, error and tolerance.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from export import backends
from export.head import SoftmaxHead, load_head
from export.parity_record import record_parity
from export.parity_report import render_markdown
from handoff import artifacts
from handoff.atomic import atomic_path, write_json
from handoff.cli import run_cli
from handoff.contract import OUTPUT_NAME
from handoff.errors import PipelineError
from handoff.held_out import HeldOut, write_held_out, write_reference_probs
from handoff.manifest import verify
from handoff.reports import read_export
from pipeline.config import DATA_DIR_FIELD, MNIST_MIRROR_FIELD, OTTO_CSV_FIELD
from pipeline.datasets.registry import dataset_spec, load_dataset
from pipeline.datasets.spec import DataSource
from pipeline.placement import resolve_device

BATCH_SIZES = (1, 2, 64, 1024)  # the exports traced batch 8; these sizes check the dynamic batch dim
RANDOM_INPUTS = 256  # seeded inputs in the contract's range, plus the dataset's extremes (e.g. all zeros)
RANDOM_SEED = 1234

# Tolerances, for float32 probabilities. Relative error is |candidate - reference| / max(|reference|,
# REL_FLOOR): softmax's relative error tracks the logits' absolute error, so it stays meaningful for
# small probabilities; the floor only guards values that underflowed.
ABS_TOL = 1e-5
REL_TOL = 1e-4
REL_FLOOR = 1e-30
ROW_SUM_TOL = 1e-5  # |sum(row) - 1|


@dataclass(frozen=True)
class ParityConfig:
    artifacts: str = field(default="artifacts", metadata={"help": "folder with model.pt and the exports"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda: cuda adds the CUDA backends"})
    data_dir: str | None = field(default=None, metadata=DATA_DIR_FIELD)
    mnist_mirror: str | None = field(default=None, metadata=MNIST_MIRROR_FIELD)
    otto_csv: str | None = field(default=None, metadata=OTTO_CSV_FIELD)


def held_out_rows(config: ParityConfig, dataset: str) -> HeldOut:
    """The dataset's labelled held-out split: what the gate judges, and what held_out.npz hands on."""
    data = load_dataset(dataset, DataSource.of(config))
    return HeldOut(data.spec.held_out, data.held_out.inputs.numpy(), data.held_out.labels.numpy())


def input_sets(dataset: str, held_out: HeldOut) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """name -> (float32 inputs, labels or None); the labelled held-out set comes first."""
    return {
        f"{dataset}-{held_out.split}": (held_out.inputs, held_out.labels),
        "random": (dataset_spec(dataset).random_inputs(RANDOM_INPUTS, RANDOM_SEED), None),
    }


def run_batched(
    backend: backends.Backend, images: np.ndarray, batch_size: int, classes: int, failures: list[str]
) -> np.ndarray:
    """The backend's outputs for `images`, `batch_size` at a time; shape/dtype problems go to `failures`."""
    outputs = []
    for start in range(0, len(images), batch_size):
        batch = np.ascontiguousarray(images[start : start + batch_size])
        out = backend.run(batch)
        if out.shape != (len(batch), classes) or out.dtype != np.float32:
            failures.append(
                f"{backend.name} at batch {batch_size}: output {out.dtype} {out.shape}, "
                f"expected float32 ({len(batch)}, {classes})"
            )
            return np.full((len(images), classes), np.nan, dtype=np.float32)
        outputs.append(out)
    return np.concatenate(outputs)


def compare(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float | int]:
    abs_err = np.abs(candidate.astype(np.float64) - reference.astype(np.float64))
    rel_err = abs_err / np.maximum(np.abs(reference.astype(np.float64)), REL_FLOOR)
    agree = reference.argmax(axis=1) == candidate.argmax(axis=1)
    return {
        "max_abs": float(abs_err.max()),
        "mean_abs": float(abs_err.mean()),
        "median_abs": float(np.median(abs_err)),
        "max_rel": float(rel_err.max()),
        "mean_rel": float(rel_err.mean()),
        "median_rel": float(np.median(rel_err)),
        "argmax_agree": int(agree.sum()),
        "images": int(len(agree)),
    }


def check_io_names(onnx_path: Path, input_name: str, failures: list[str]) -> dict:
    io = backends.onnx_io(onnx_path)
    (in_name, in_type, in_shape), = io["inputs"]
    (out_name, out_type, out_shape), = io["outputs"]
    if (in_name, in_type, out_name, out_type) != (input_name, "tensor(float)", OUTPUT_NAME, "tensor(float)"):
        failures.append(f"{artifacts.ONNX}: input {in_name} {in_type}, output {out_name} {out_type}; "
                        f"expected {input_name}/{OUTPUT_NAME} tensor(float)")
    if not isinstance(in_shape[0], str) or not isinstance(out_shape[0], str):
        failures.append(f"{artifacts.ONNX}: batch dimension is not dynamic (input {in_shape}, output {out_shape})")
    return io


def gate(config: ParityConfig, head: SoftmaxHead, payload: dict, held_out: HeldOut,
         torch_files: list[str]) -> tuple[dict, np.ndarray]:
    """Run every backend (the torch artifacts in `torch_files`, ONNX Runtime), compare against eager
    CPU; returns the parity report and the reference's probabilities on the held-out rows."""
    device = resolve_device(config.device)
    out = Path(config.artifacts)
    if device.type == "cuda":
        backends.disable_tf32()
    devices = [torch.device("cpu")] + ([device] if device.type == "cuda" else [])
    candidates = backends.all_backends(head, out, torch_files, devices)
    failures: list[str] = []
    io = check_io_names(out / artifacts.ONNX, dataset_spec(payload["dataset"]).input_name, failures)
    inputs = input_sets(payload["dataset"], held_out)
    ran = [b for b in candidates if b.skipped is None]
    reference = ran[0]  # eager-cpu
    outputs = {
        (b.name, set_name, bs): run_batched(b, images, bs, len(payload["classes"]), failures)
        for b in ran for set_name, (images, _) in inputs.items() for bs in BATCH_SIZES
    }
    for (name, set_name, bs), probs in outputs.items():
        worst = float(np.abs(probs.astype(np.float64).sum(axis=1) - 1).max())
        if not worst <= ROW_SUM_TOL:
            failures.append(f"{name} at batch {bs} ({set_name}): a row sums to 1 ± {worst:.1e} > {ROW_SUM_TOL:.0e}")
    pairs = [_pair(reference, b, inputs, outputs, failures) for b in ran[1:]]
    reference_probs = outputs[(reference.name, next(iter(inputs)), BATCH_SIZES[-1])]
    return {
        "passed": not failures,
        "failures": failures,
        "reference": reference.name,
        "tolerances": {"abs": ABS_TOL, "rel": REL_TOL, "rel_floor": REL_FLOOR, "row_sum": ROW_SUM_TOL},
        "batch_sizes": list(BATCH_SIZES),
        "inputs": {name: len(images) for name, (images, _) in inputs.items()},
        "labelled_set": next(iter(inputs)),
        "onnx_io": io,
        "backends": {b.name: _backend_entry(b, inputs, outputs) for b in candidates},
        "pairs": pairs,
        "device": str(device),
    }, reference_probs


def _pair(reference, candidate, inputs, outputs, failures: list[str]) -> dict:
    """Compare one candidate with the reference on every input set and batch size."""
    by_case, pair_failures = {}, []
    for set_name in inputs:
        for bs in BATCH_SIZES:
            stats = compare(outputs[(reference.name, set_name, bs)], outputs[(candidate.name, set_name, bs)])
            by_case[f"{set_name}@{bs}"] = stats
            pair_failures += _failed_checks(f"{candidate.name} vs {reference.name} at batch {bs} ({set_name})", stats)
    failures += pair_failures
    worst_case, worst = max(by_case.items(), key=lambda kv: kv[1]["max_abs"])
    cases = by_case.values()
    return {
        "reference": reference.name,
        "candidate": candidate.name,
        "passed": not pair_failures,
        "max_abs": worst["max_abs"],
        "worst_case": worst_case,
        "max_rel": max(s["max_rel"] for s in cases),
        "mean_abs": float(np.mean([s["mean_abs"] for s in cases])),
        "median_abs": float(np.median([s["median_abs"] for s in cases])),
        "mean_rel": float(np.mean([s["mean_rel"] for s in cases])),
        "median_rel": float(np.median([s["median_rel"] for s in cases])),
        "by_case": by_case,
    }


def _failed_checks(label: str, stats: dict) -> list[str]:
    failed = []
    if not stats["max_abs"] <= ABS_TOL:
        failed.append(f"{label}: max abs error {stats['max_abs']:.3e} > tolerance {ABS_TOL:.0e}")
    if not stats["max_rel"] <= REL_TOL:
        failed.append(f"{label}: max rel error {stats['max_rel']:.3e} > tolerance {REL_TOL:.0e}")
    if stats["argmax_agree"] != stats["images"]:
        failed.append(f"{label}: argmax differs on {stats['images'] - stats['argmax_agree']} of {stats['images']} images")
    return failed


def _backend_entry(backend, inputs, outputs) -> dict:
    if backend.skipped is not None:
        return {"status": "skipped", "reason": backend.skipped, "device": backend.device, **backend.details}
    labelled, (_, labels) = next(iter(inputs.items()))
    accuracy = {
        str(bs): float((outputs[(backend.name, labelled, bs)].argmax(axis=1) == labels).mean())
        for bs in BATCH_SIZES
    }
    return {"status": "ran", "device": backend.device, "accuracy": accuracy, **backend.details}


def verify_exports(out: Path) -> list[str]:
    """The files must be the ones their stages recorded, and the exports made from this model.pt;
    returns the torch artifacts export wrote (TorchScript only while this torch had it)."""
    verify(out, [artifacts.EXPORT_REPORT])
    report = read_export(out)
    current = verify(out, [artifacts.MODEL, *report.torch_files, artifacts.ONNX])[artifacts.MODEL]
    if report.source_sha256 != current:
        raise PipelineError(
            f"{out / artifacts.ONNX}: exported from another model.pt (sha256 {report.source_sha256[:16]}…, now {current[:16]}…); "
            "run `make export`"
        )
    return report.torch_files


def run(config: ParityConfig) -> None:
    out = Path(config.artifacts)
    torch_files = verify_exports(out)
    head, payload = load_head(out / artifacts.MODEL)
    held_out = held_out_rows(config, payload["dataset"])
    report, reference_probs = gate(config, head, payload, held_out, torch_files)
    markdown = render_markdown(report)
    write_held_out(out, held_out)
    write_reference_probs(out, reference_probs)
    write_json(out / artifacts.PARITY, report)
    with atomic_path(out / artifacts.PARITY_MD) as tmp:
        tmp.write_text(markdown)
    record_parity(out, report, dataclasses.asdict(config), payload["config"])
    print(markdown)
    if not report["passed"]:
        failures = report["failures"]
        raise PipelineError(f"parity failed: {failures[0]} ({len(failures)} failed checks; see {out / artifacts.PARITY_MD})")


def main(argv: list[str] | None = None) -> int:
    return run_cli(ParityConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
