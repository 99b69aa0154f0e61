"""The parity gate for lower-precision variants: the same function as float32, within stated tolerances.

A variant cannot match float32 to 1e-5 (the fp32 gate's tolerance), so it is held to what a user
of its predictions sees: held-out accuracy, argmax agreement with the float32 ONNX model row by row,
rows that still sum to 1, and its largest probability error (reported; bounded for fp16 only).
Every check runs at each of BATCH_SIZES (batch 1 as a server sees it, 1000 as a batch job does).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from export.backends import Backend
from export.parity import run_batched

BATCH_SIZES = (1, 64, 1000)


@dataclass(frozen=True)
class Tolerance:
    max_accuracy_drop_points: float  # held-out accuracy of float32 minus the variant's, in points (%)
    min_agreement: float  # share of held-out rows whose argmax equals float32's
    row_sum: float = 1e-5  # |sum(row) - 1|: Softmax stays float32 in every variant
    max_abs: float | None = None  # bound on |p_variant - p_fp32|; None: reported, not bounded


TOLERANCES = {
    "int8": Tolerance(max_accuracy_drop_points=0.3, min_agreement=0.995),
    "int8-dynamic": Tolerance(max_accuracy_drop_points=0.3, min_agreement=0.995),
    # float16 keeps 11 significant bits: probabilities move by ~1e-3 at most (measured 6.5e-4 on MNIST)
    "fp16": Tolerance(max_accuracy_drop_points=0.1, min_agreement=0.999, max_abs=5e-3),
}


def stricter(tolerance: Tolerance, share: float) -> Tolerance:
    """`tolerance` with only `share` of its slack: for choices made on one sample of rows that must
    hold on another."""
    return Tolerance(tolerance.max_accuracy_drop_points * share, 1 - (1 - tolerance.min_agreement) * share,
                     tolerance.row_sum, tolerance.max_abs)


def outputs_by_batch(backend: Backend, inputs: np.ndarray, classes: int, failures: list[str]) -> dict[int, np.ndarray]:
    return {bs: run_batched(backend, inputs, bs, classes, failures) for bs in BATCH_SIZES}


def check(variant: str, candidate: dict[int, np.ndarray], reference: dict[int, np.ndarray], labels: np.ndarray,
          label: str, tolerance: Tolerance | None = None) -> tuple[dict, list[str]]:
    """Compare a variant's outputs with float32's at each batch size; (report entry, failures)."""
    tolerance = tolerance or TOLERANCES[variant]
    by_batch = {str(bs): _stats(candidate[bs], reference[bs], labels) for bs in BATCH_SIZES}
    worst = {
        "accuracy": min(s["accuracy"] for s in by_batch.values()),
        "reference_accuracy": min(s["reference_accuracy"] for s in by_batch.values()),
        "agreement": min(s["agreement"] for s in by_batch.values()),
        "max_abs": max(s["max_abs"] for s in by_batch.values()),
        "row_sum": max(s["row_sum"] for s in by_batch.values()),
    }
    worst["accuracy_drop_points"] = 100 * (worst["reference_accuracy"] - worst["accuracy"])
    failures = _failures(f"{variant} ({label})", worst, tolerance)
    entry = {**worst, "rows": len(labels), "batch_sizes": list(BATCH_SIZES), "by_batch": by_batch,
             "tolerance": asdict(tolerance), "passed": not failures}
    return entry, failures


def _stats(probs: np.ndarray, reference: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": float((probs.argmax(axis=1) == labels).mean()),
        "reference_accuracy": float((reference.argmax(axis=1) == labels).mean()),
        "agreement": float((probs.argmax(axis=1) == reference.argmax(axis=1)).mean()),
        "max_abs": float(np.abs(probs.astype(np.float64) - reference).max()),
        "row_sum": float(np.abs(probs.astype(np.float64).sum(axis=1) - 1).max()),
    }


def _failures(label: str, worst: dict[str, float], tolerance: Tolerance) -> list[str]:
    failed = []
    if not worst["accuracy_drop_points"] <= tolerance.max_accuracy_drop_points:
        failed.append(f"{label}: accuracy {100 * worst['accuracy']:.2f}% is {worst['accuracy_drop_points']:.2f} points "
                      f"below float32's, tolerance {tolerance.max_accuracy_drop_points}")
    if not worst["agreement"] >= tolerance.min_agreement:
        failed.append(f"{label}: argmax agrees with float32 on {100 * worst['agreement']:.2f}% of rows, "
                      f"needs {100 * tolerance.min_agreement:.1f}%")
    if not worst["row_sum"] <= tolerance.row_sum:
        failed.append(f"{label}: a row sums to 1 ± {worst['row_sum']:.1e} > {tolerance.row_sum:.0e}")
    if tolerance.max_abs is not None and not worst["max_abs"] <= tolerance.max_abs:
        failed.append(f"{label}: max probability error {worst['max_abs']:.2e} > {tolerance.max_abs:.0e}")
    return failed
