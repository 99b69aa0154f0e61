"""Ablation: what each ingredient of the fast recipe buys, one change at a time, in one run.

Every variant trains the fast recipe for its epochs from the same seed, changing one thing:
the batch size, the optimiser and schedule, the label smoothing, the initialisation, the input
normalisation, the precision, the threads, or the data path. Test accuracy and training seconds
(warm-up and evaluation excluded) go into the report's ablation table, next to the unchanged recipe.
A study (`make bench-study`), not part of `make bench`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest
import torch
from torch.utils.data import DataLoader

from bench.suites.settings import SMOKE_TRAIN_SAMPLES
from pipeline.config import RECIPES, TrainConfig
from pipeline.datasets.spec import Split
from pipeline.placement import native_bf16
from pipeline.train import train

pytestmark = pytest.mark.study

FAST = RECIPES["mnist"]["fast"]
LECTURE_OPTIMISER = {"optimizer": "sgd", "lr": 0.01, "momentum": 0.5, "nesterov": False, "weight_decay": 0.0,
                     "schedule": "constant"}
SGD_NESTEROV = {"optimizer": "sgd", "lr": 0.4, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4}

# name -> (what changes, Recipe fields to replace); precision, threads and data path are handled below.
VARIANTS = {
    "fast": ("nothing: the recipe as shipped", {}),
    "batch-1024": (f"batch 1024 instead of {FAST.batch_size}, same schedule", {"batch_size": 1024}),
    "batch-64": ("batch 64 (the lecture's), same schedule", {"batch_size": 64}),
    "lecture-optimiser": ("SGD lr 0.01, momentum 0.5, constant (the lecture's)", LECTURE_OPTIMISER),
    "sgd-nesterov": ("SGD Nesterov 0.9, peak lr 0.4, weight decay 5e-4, same one-cycle", SGD_NESTEROV),
    "constant-lr": ("Adam at a constant lr 0.001 instead of the one-cycle schedule", {"schedule": "constant", "lr": 0.001}),
    "no-label-smoothing": (f"label smoothing 0 instead of {FAST.label_smoothing}", {"label_smoothing": 0.0}),
    "torch-init": ("PyTorch's default init instead of He", {"init": "torch"}),
    "no-normalisation": ("raw [0, 1] inputs instead of standardised", {"normalize_inputs": False}),
    "other-precision": ("the precision `auto` did not pick", {}),
    "one-thread": ("1 thread instead of all cores", {}),
    "dataloader": ("a DataLoader over the same tensors (per-sample indexing, collation)", {}),
}


def dataloader_batches(split: Split, batch_size: int, generator: torch.Generator) -> Iterable:
    """The lecture's data path on our tensors: DataLoader indexes one sample at a time and stacks."""
    return DataLoader(split, batch_size=batch_size, shuffle=True, generator=generator)


@pytest.mark.parametrize("variant", VARIANTS)
def test_ablation(benchmark, variant, device, mnist, settings):
    if device.type != "cpu":
        pytest.skip("the ablation is a CPU table")
    what, fields = VARIANTS[variant]
    recipe = dataclasses.replace(FAST, **fields)
    if variant == "other-precision":
        recipe = dataclasses.replace(recipe, precision="off" if native_bf16(device)[0] else "bfloat16")
    config = TrainConfig(recipe="fast", device="cpu", epochs=1 if settings.smoke else None,
                         train_samples=SMOKE_TRAIN_SAMPLES if settings.smoke else None)
    recipe = dataclasses.replace(recipe, epochs=config.resolved_recipe.epochs)
    batches = {"batches": dataloader_batches} if variant == "dataloader" else {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1 if variant == "one-thread" else threads)
    try:
        result = benchmark.pedantic(train, args=(config, mnist), kwargs={"recipe": recipe, **batches},
                                    rounds=1, iterations=1, warmup_rounds=0)
    finally:
        torch.set_num_threads(threads)
    metrics = result.metrics
    benchmark.group = "ablation cpu"
    benchmark.extra_info.update(
        kind="ablation", variant=variant, change=what, device="cpu", epochs=metrics["epochs"],
        batch_size=recipe.batch_size, precision=metrics["precision"], torch_threads=metrics["hardware"]["torch_threads"],
        final_test_accuracy=metrics["test_accuracy"], train_seconds=metrics["train_seconds"],
        samples_per_second=metrics["samples_per_second"], smoke=settings.smoke,
    )
