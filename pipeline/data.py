"""Datasets as verified, decoded tensors, behind one interface.

A dataset is a module under `pipeline/datasets/` exposing `SPEC`, a `DatasetSpec`: how to load
it, its input contract (shape, name, the transform the exported model applies), its class names
and which held-out split it is judged on. `dataset_spec(name)` imports it (a new dataset adds a
line there); train, export, parity and bench read sizes, names and classes only from there, never
from a dataset's own module.

Loaded data is a `Dataset`: a training `Split` and a held-out one (MNIST: the test set; Otto: a
seeded, stratified validation split), each inputs (float32, N x *input_shape) and int64 labels.
Batches are built by indexing those tensors, not by per-sample transforms.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from pipeline.config import DATASETS
from pipeline.handoff.errors import PipelineError


class Split(TensorDataset):
    """(inputs, labels) of one split; a `Dataset`, so `DataLoader(split, ...)` works as in the lecture.

    inputs: float32, N x *input_shape (MNIST: N x 1 x 28 x 28 in [0, 1]); labels: int64, N.
    """

    @property
    def inputs(self) -> torch.Tensor:
        return self.tensors[0]

    @property
    def labels(self) -> torch.Tensor:
        return self.tensors[1]

    def to(self, device: torch.device, input_dtype: torch.dtype | None = None) -> Split:
        return Split(self.inputs.to(device, input_dtype), self.labels.to(device))

    def first(self, count: int | None) -> Split:
        """The first `count` samples (views), or the whole split when `count` is None."""
        return self if count is None else Split(self.inputs[:count], self.labels[:count])


@dataclass(frozen=True)
class DataSource:
    """Where the data may come from; each dataset reads the fields it needs."""

    artifacts: str = "artifacts"  # data is cached under <artifacts>/data unless data_dir is given
    data_dir: str | None = None
    mnist_mirror: str | None = None
    otto_csv: str | None = None

    @classmethod
    def of(cls, config: Any) -> DataSource:
        """The source fields a config has (TrainConfig, ParityConfig); the others keep their defaults."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls) if hasattr(config, f.name)})


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    classes: tuple[str, ...]
    input_shape: tuple[int, ...]  # one sample, as every artifact takes it
    input_name: str  # the exported graph's input name
    input_contract: str  # what callers pass, in words (after "float32, N x <shape>, ")
    input_transform: str  # applied inside the exported model before layer 1: "none" | "log1p"
    input_range: tuple[float, float | None]  # valid raw input values (min, max); None: no upper bound
    input_format: str  # what a deployed predictor reads: "grayscale-image" (N x 1 x H x W) | "otto-csv"
    per_feature_norm: bool  # standardise each feature (True) or all inputs with one mean/std (False)
    held_out: str  # the split metrics are reported on: "test" | "validation"
    accuracy_metric: str  # train_metrics.json keys for the held-out accuracy and mean log loss
    loss_metric: str
    load: Callable[[DataSource], Dataset]
    # (count, seed) -> float32 inputs in the contract's range for the parity gate, extremes included
    random_inputs: Callable[[int, int], np.ndarray]


@dataclass(frozen=True)
class Dataset:
    spec: DatasetSpec
    train: Split
    held_out: Split
    info: dict[str, Any]  # recorded in train_metrics.json (split sizes, seeds, source file)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.spec.input_shape


def dataset_spec(name: str) -> DatasetSpec:
    """The dataset's contract; only its own module is imported (an MNIST run loads no Otto code)."""
    if name == "mnist":
        from pipeline.datasets import mnist as module
    elif name == "otto":
        from pipeline.datasets import otto as module
    else:
        raise PipelineError(f"unknown DATASET={name!r}; use one of {', '.join(DATASETS)}")
    return module.SPEC


def load_dataset(name: str, source: DataSource) -> Dataset:
    return dataset_spec(name).load(source)


def shuffled_batches(
    split: Split, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled minibatches made by indexing the split's tensors.

    The order is drawn on the CPU from `generator`, so it is the same whichever device holds the
    data. The last batch may be smaller (as with DataLoader's default drop_last=False).
    """
    order = torch.randperm(len(split), generator=generator).to(split.inputs.device)
    for index in order.split(batch_size):
        yield split.inputs[index], split.labels[index]


def ordered_batches(split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The split in its stored order, as views (no copies): for evaluation."""
    yield from zip(split.inputs.split(batch_size), split.labels.split(batch_size))
