"""A split cut into minibatches by indexing its resident tensors (no per-sample work, no copies
beyond the gather): shuffled for training, in order for evaluation."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from pipeline.datasets.spec import Split


def shuffled_batches(
    split: Split, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled minibatches made by indexing the split's tensors.

    The order is drawn on the CPU from `generator`, so it is the same whichever device holds the
    data. The last batch may be smaller (as with DataLoader's default drop_last=False).
    """
    order = torch.randperm(len(split), generator=generator).to(split.inputs.device)
    for index in order.split(batch_size):
        yield split.rows(index)


def ordered_batches(split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The split in its stored order, as views (no copies): for evaluation."""
    yield from zip(split.inputs.split(batch_size), split.labels.split(batch_size))
