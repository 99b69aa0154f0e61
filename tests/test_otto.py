"""Otto through the same pipeline, on a seeded synthetic CSV of Kaggle's schema (the real data is
Kaggle's and not in the repository): split, metrics checked against an independent computation,
train -> export -> parity -> bench end to end, and one-line errors that leave nothing behind."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch

from conftest import OTTO_EPOCHS as EPOCHS
from conftest import OTTO_ROWS as ROWS
from conftest import REPO, worker_threads
from handoff.otto_csv import CLASSES, FEATURES
from pipeline.checkpoint import load_checkpoint
from pipeline.datasets.otto import SPLIT_SEED, VALIDATION_FRACTION, stratified_split


def test_split_is_stratified_seeded_and_a_partition(otto):
    labels = np.concatenate([otto.train.labels.numpy(), otto.held_out.labels.numpy()])
    assert len(labels) == ROWS and otto.train.inputs.shape[1:] == (93,) and otto.train.inputs.dtype == torch.float32
    for label in range(len(CLASSES)):
        total, held = (labels == label).sum(), (otto.held_out.labels.numpy() == label).sum()
        assert held == round(VALIDATION_FRACTION * total)  # each class keeps its share
    train_rows, validation_rows = stratified_split(labels, VALIDATION_FRACTION, SPLIT_SEED)
    again = stratified_split(labels, VALIDATION_FRACTION, SPLIT_SEED)
    assert np.array_equal(train_rows, again[0]) and np.array_equal(validation_rows, again[1])
    assert not set(train_rows) & set(validation_rows) and len(train_rows) + len(validation_rows) == ROWS
    assert not np.array_equal(validation_rows, stratified_split(labels, VALIDATION_FRACTION, SPLIT_SEED + 1)[1])


def _reference_metrics(probs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Kaggle's multi-class log loss and accuracy, written out row by row in plain Python."""
    total, correct = 0.0, 0
    for row, label in zip(probs.tolist(), labels.tolist(), strict=True):
        clipped = [min(max(p, 1e-15), 1 - 1e-15) for p in row]
        total -= math.log(clipped[label] / sum(clipped))
        correct += max(range(len(row)), key=row.__getitem__) == label
    return total / len(labels), correct / len(labels)


def test_metrics_match_an_independent_computation(otto_artifacts, otto):
    metrics = json.loads((otto_artifacts / "train_metrics.json").read_text())
    model, payload = load_checkpoint(otto_artifacts / "model.pt")
    with torch.inference_mode():
        probs = torch.softmax(model(otto.held_out.inputs).double(), dim=1).numpy()  # raw counts in
    log_loss, accuracy = _reference_metrics(probs, otto.held_out.labels.numpy())
    assert metrics["val_log_loss"] == pytest.approx(log_loss, rel=1e-6)
    assert metrics["val_accuracy"] == pytest.approx(accuracy, abs=1e-12)
    assert "test_accuracy" not in metrics and metrics["held_out"] == "validation"
    majority = np.bincount(otto.train.labels.numpy()).max() / len(otto.train)
    assert metrics["val_accuracy"] > majority + 0.2  # it learned the synthetic structure
    assert 1 <= metrics["best_epoch"] <= EPOCHS
    assert metrics["val_log_loss"] == pytest.approx(min(r["val_log_loss"] for r in metrics["history"]), rel=1e-4)
    assert payload["architecture"]["hidden"] == [512, 256] and payload["architecture"]["input_transform"] == "log1p"
    assert metrics["data"]["split_seed"] == SPLIT_SEED and metrics["data"]["held_out_rows"] == len(otto.held_out)


def test_exports_carry_the_otto_contract(otto_artifacts, otto):
    model = onnx.load(otto_artifacts / "model.onnx")
    assert [i.name for i in model.graph.input] == ["features"] and [o.name for o in model.graph.output] == ["probs"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_value == len(FEATURES)
    props = {p.key: p.value for p in model.metadata_props}
    assert json.loads(props["class_labels"]) == list(CLASSES) and "val_accuracy" in props
    assert "raw non-negative counts" in props["input_contract"]
    extra = {"metadata.json": ""}
    scripted = torch.jit.load(str(otto_artifacts / "model.torchscript.pt"), _extra_files=extra)
    metadata = json.loads(extra["metadata.json"])
    assert metadata["classes"] == list(CLASSES) and metadata["input_name"] == "features"
    probs = scripted(otto.held_out.inputs[:5])  # raw counts: log1p and standardisation are inside
    assert probs.shape == (5, len(CLASSES)) and torch.allclose(probs.sum(dim=1), torch.ones(5))


def test_parity_ran_on_validation_rows_and_random_counts(otto_artifacts, otto):
    parity = json.loads((otto_artifacts / "parity.json").read_text())
    assert parity["passed"] and parity["labelled_set"] == "otto-validation"
    assert parity["inputs"] == {"otto-validation": len(otto.held_out), "random": 258}
    assert {p["candidate"] for p in parity["pairs"]} >= {"torchscript-cpu", "ort-cpu"}


def test_bench_measures_otto_inference_and_train_step(otto_artifacts, otto_csv, cli_env, tmp_path):
    results = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "bench" / "suites"), "-q", "-p", "no:cacheprovider", "--bench-smoke",
         f"--bench-threads={worker_threads()}", "--bench-batch-sizes=1,1024",  # the targets' sizes: one compile each
         "--bench-artifacts", str(otto_artifacts), "--bench-dataset", "otto", f"--benchmark-json={results}"],
        capture_output=True, text=True, env={**cli_env, "OTTO_CSV": str(otto_csv)}, cwd=REPO, check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    data = json.loads(results.read_text())
    ran = {(b["extra_info"]["kind"], b["extra_info"]["dataset"]) for b in data["benchmarks"]}
    assert ran == {("inference", "otto"), ("train_step", "otto"), ("targets_inference", "otto"), ("targets_training", "otto")}
    assert data["machine_info"]["dataset"] == "otto"
    assert any("an MNIST benchmark" in s["reason"] for s in data["skipped"])  # the MNIST-only tables, skipped


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "empty"),
        ("id,feat_1,target\n1,0,Class_1\n", "missing"),
        (None, "Class_10"),  # a valid file with one unknown class
    ],
)
def test_a_malformed_csv_is_one_line_and_writes_nothing(content, expected, otto_csv, cli_env, tmp_path):
    bad = tmp_path / "bad.csv"
    if content is None:
        header = ",".join(["id", *FEATURES, "target"])
        content = f"{header}\n1,{','.join(['0'] * 93)},Class_10\n"
    bad.write_text(content)
    out = tmp_path / "artifacts"
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "--dataset", "otto", "--otto-csv", str(bad), "--device", "cpu",
         "--artifacts", str(out)],
        capture_output=True, text=True, env=cli_env, cwd=REPO, check=False,
    )
    assert run.returncode != 0
    error = run.stderr.strip().splitlines()
    assert len(error) == 1 and str(bad) in error[0] and expected in error[0], run.stderr
    assert not (out / "model.pt").exists() and not (out / "train_metrics.json").exists()


def test_otto_needs_its_csv(cli_env, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "--dataset", "otto", "--device", "cpu", "--artifacts", str(tmp_path)],
        capture_output=True, text=True, env={k: v for k, v in cli_env.items() if k != "OTTO_CSV"}, cwd=REPO,
        check=False,
    )
    assert run.returncode != 0 and "OTTO_CSV" in run.stderr and not (tmp_path / "model.pt").exists()
