"""One training step (forward, backward, optimizer step) of the real model on real batches of the
bench's dataset (MNIST, or Otto).

Measured for each recipe at its own batch size (seed: the lecture's 64; fast: its larger batch),
with the recipe's optimizer, loss and the precision it resolves to here (as in training), on CPU
and CUDA. The batches are gathered, converted and put on the device before timing; the timed call
cycles through them.
"""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

from bench.suites.measuring import batch_indices, measure, training_run
from pipeline.model import forward_macs
from pipeline.step import train_step


@pytest.mark.parametrize("recipe_name", ["seed", "fast"])
def test_train_step(benchmark, recipe_name, device, dataset, settings):
    run = training_run(recipe_name, dataset, device)  # as in training: normalised and placed once, untimed
    dtype = run.placement.precision.autocast_dtype
    cycle = itertools.cycle([run.train_split.rows(index) for index in batch_indices(run)])

    def step() -> None:
        train_step(run.model, run.optimizer, run.recipe, dtype, *next(cycle))  # no lr schedule: it is O(1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    benchmark.group = f"train step {device.type}"
    benchmark.extra_info.update(
        kind="train_step", dataset=dataset.name, recipe=recipe_name, device=device.type, batch_size=run.recipe.batch_size,
        forward_macs=forward_macs(run.model),
        precision=dataclasses.asdict(run.placement.precision),
    )
    measure(benchmark, step, run.recipe.batch_size, settings)
