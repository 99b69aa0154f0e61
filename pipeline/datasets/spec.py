"""What every dataset is, whichever it is: its contract (`DatasetSpec`), where its files may come
from (`DataSource`) and the loaded splits (`Dataset`, `Split`: verified, decoded tensors).

A dataset is a module under `pipeline/datasets/` exposing `SPEC`, a `DatasetSpec`: how to load
it, its input contract (shape, name, the transform the exported model applies, the file format a
predictor reads), its class names and which held-out split it is judged on. The registry
(pipeline.datasets.registry) names them; train, export, parity and bench read sizes, names and
classes only from a spec, never from a dataset's own module.

Loaded data is a `Dataset`: a training `Split` and a held-out one (MNIST: the test set; Otto: a
seeded, stratified validation split), each inputs (float32, N x *input_shape) and int64 labels.
Batches are built by indexing those tensors (pipeline.batches), not by per-sample transforms.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset


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

    def rows(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, labels) of the samples at `index` (int64, on the split's device): a minibatch.
        index_select, not `inputs[index]`: advanced indexing gathers element by element, and took
        5-6x as long on the CPU (about 150-180 µs against 26-28 µs for 512 MNIST rows on a Zen 4),
        4% of the fast recipe's whole training step."""
        return self.inputs.index_select(0, index), self.labels.index_select(0, index)

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
    input_format: str  # a handoff.contract.InputFormat: what a deployed predictor reads
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
