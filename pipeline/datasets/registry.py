"""The datasets the pipeline trains on, by name: the one list, and their specs.

A new dataset is a module under pipeline/datasets/ exposing `SPEC` (pipeline.datasets.spec), plus
a line in DATASETS and in `dataset_spec`. Only the asked-for module is imported (an MNIST run loads
no Otto code); the modules import pipeline.datasets.spec, never this registry.
"""

from __future__ import annotations

from handoff.errors import PipelineError
from pipeline.datasets.spec import Dataset, DatasetSpec, DataSource

DATASETS = ("mnist", "otto")


def dataset_spec(name: str) -> DatasetSpec:
    """The dataset's contract."""
    if name == "mnist":
        from pipeline.datasets import mnist as module
    elif name == "otto":
        from pipeline.datasets import otto as module
    else:
        raise PipelineError(f"unknown DATASET={name!r}; use one of {', '.join(DATASETS)}")
    return module.SPEC


def load_dataset(name: str, source: DataSource) -> Dataset:
    return dataset_spec(name).load(source)
