"""Otto Group Product Classification (Kaggle, 2015): 93 count features, 9 product classes.

The data is Kaggle's and is not shipped: point `OTTO_CSV` at `train.csv`, `train.csv.gz` or
Kaggle's `train.csv.zip` (read and validated by `handoff.otto_csv`). Kaggle's test set
has no labels, so the held-out split is a seeded, stratified 20% of `train.csv`: every class
keeps its share, and the split depends only on the file and `SPLIT_SEED`, never on the training
seed, so train, parity and bench all see the same validation rows.

Input contract: float32, N x 93 raw counts in the column order feat_1..feat_93. The exported
model applies log1p and the per-feature standardisation itself (`input_transform`), so every
artifact takes the counts as they are in the CSV.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from handoff.contract import InputFormat
from handoff.digest import sha256_file
from handoff.errors import PipelineError
from handoff.otto_csv import CLASSES, FEATURES, read_otto_csv
from pipeline.datasets.spec import Dataset, DatasetSpec, DataSource, Split

VALIDATION_FRACTION = 0.2
SPLIT_SEED = 2015  # fixed: the split is part of the dataset, not of a training run


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): `fraction` of each class, rounded, drawn with `seed`.

    Each class's rows are permuted and its first round(fraction * count) go to validation; both
    index arrays come back sorted, so the split keeps the file's row order.
    """
    rng = np.random.default_rng(seed)
    validation = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        validation.append(rng.permutation(rows)[: round(fraction * len(rows))])
    held = np.zeros(len(labels), dtype=bool)
    held[np.concatenate(validation)] = True
    return np.flatnonzero(~held), np.flatnonzero(held)


def load(source: DataSource) -> Dataset:
    if not source.otto_csv:
        raise PipelineError("DATASET=otto needs OTTO_CSV=path/to/train.csv (.csv, .csv.gz or Kaggle's .csv.zip)")
    table = read_otto_csv(Path(source.otto_csv))
    train_rows, validation_rows = stratified_split(table.labels, VALIDATION_FRACTION, SPLIT_SEED)
    features, labels = torch.from_numpy(table.features), torch.from_numpy(table.labels)

    def split(rows: np.ndarray) -> Split:
        index = torch.from_numpy(rows)
        return Split(features[index], labels[index])

    return Dataset(
        SPEC,
        train=split(train_rows),
        held_out=split(validation_rows),
        info={"source": str(source.otto_csv), "sha256": sha256_file(Path(source.otto_csv)),
              "rows": len(table.labels), "train_rows": len(train_rows), "held_out_rows": len(validation_rows), "validation_fraction": VALIDATION_FRACTION,
              "split_seed": SPLIT_SEED, "stratified": True},
    )


def random_inputs(count: int, seed: int) -> np.ndarray:
    """Seeded count vectors like Otto's: mostly zeros, small counts, a heavy tail; then an
    all-zeros row and a row of large counts (1000 each, beyond anything in the training data)."""
    rng = np.random.default_rng(seed)
    nonzero = rng.random((count, len(FEATURES))) < 0.2
    counts = np.where(nonzero, rng.geometric(0.3, size=(count, len(FEATURES))), 0)
    extremes = np.stack([np.zeros(len(FEATURES)), np.full(len(FEATURES), 1000.0)])
    return np.concatenate([counts, extremes]).astype(np.float32)


SPEC = DatasetSpec(
    name="otto",
    classes=CLASSES,
    input_shape=(len(FEATURES),),
    input_name="features",
    input_contract="raw non-negative counts in the column order feat_1..feat_93",
    input_transform="log1p",
    input_range=(0.0, None),
    input_format=InputFormat.OTTO_CSV,
    per_feature_norm=True,
    held_out="validation",
    accuracy_metric="val_accuracy",
    loss_metric="val_log_loss",
    load=load,
    random_inputs=random_inputs,
)
