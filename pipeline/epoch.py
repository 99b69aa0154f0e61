"""One training epoch and its record: the loop `pipeline.train` runs each epoch, on one process
or on each rank of several (pipeline.distributed)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch
from tqdm import tqdm

from pipeline import distributed
from pipeline.datasets.spec import Split
from pipeline.model import MLP
from pipeline.step import Stepper


class MetricNames(NamedTuple):
    """The held-out metrics' record keys, which name the split: test_loss/test_accuracy (MNIST),
    val_log_loss/val_accuracy (Otto)."""

    loss: str
    accuracy: str


# (split, batch size, shuffling generator) -> one epoch of (images, labels) batches on the split's device
BatchSource = Callable[[Split, int, torch.Generator], Iterable[tuple[torch.Tensor, torch.Tensor]]]


def copy_state(model: MLP) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights, untouched by later steps."""
    return {name: tensor.detach().to("cpu", copy=True) for name, tensor in model.state_dict().items()}


def warmup_batches(split: Split, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One batch of each size an epoch uses: the full batch and the last, partial one."""
    sizes = sorted({min(batch_size, len(split)), len(split) % batch_size} - {0}, reverse=True)
    return [(split.inputs[:size], split.labels[:size]) for size in sizes]


def train_epoch(stepper: Stepper, split: Split, batch_size: int, shuffle, epoch: int, batches: BatchSource,
                 steps: int, world: distributed.World) -> tuple[float, int]:
    """The first `steps` batches of one shuffled pass over `split` (all of them but in a fractional
    last epoch); returns (mean training loss per sample, samples), over every rank. The loss is the
    only device read."""
    stepper.model.train()
    stepper.loss_sum.zero_()
    samples = 0
    for inputs, labels in tqdm(itertools.islice(batches(split, batch_size, shuffle), steps), total=steps,
                               desc=f"epoch {epoch}", leave=False, disable=None if world.is_main else True):
        stepper(inputs, labels)
        samples += len(labels)
    if world.distributed:  # every rank's loss and rows: the epoch's
        totals = torch.stack([stepper.loss_sum.float(), torch.tensor(float(samples), device=stepper.loss_sum.device)])
        loss_sum, samples = distributed.all_reduce_sum(totals, world).tolist()
        return loss_sum / samples, int(samples)
    return stepper.loss_sum.item() / samples, samples


def epoch_record(epoch: int, train_loss: float, names: MetricNames, loss: float, accuracy: float, seconds: float,
                 samples: int) -> dict[str, float]:
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        names.loss: loss,
        names.accuracy: accuracy,
        "seconds": seconds,
        "samples": samples,
        "samples_per_second": samples / seconds,
    }


def summary_line(record: dict[str, float], names: MetricNames, epochs: float) -> str:
    loss, accuracy = names.loss, names.accuracy
    return (
        f"epoch {record['epoch']}/{epochs:g}  train_loss {record['train_loss']:.4f}  "
        f"{loss} {record[loss]:.4f}  {accuracy} {100 * record[accuracy]:.2f}%  "
        f"{record['seconds']:.2f} s  {record['samples_per_second']:,.0f} samples/s"
    )
