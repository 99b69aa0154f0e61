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
import math

import pytest
import torch

from bench.conftest import measure
from pipeline.config import RECIPES
from pipeline.model import MLP, forward_macs, initialize
from pipeline.normalization import input_norm
from pipeline.precision import resolve_precision
from pipeline.step import build_optimizer, train_step

PREPARED_BATCHES = 16


@pytest.mark.parametrize("recipe_name", ["seed", "fast"])
def test_train_step(benchmark, recipe_name, device, dataset, settings):
    recipe = RECIPES[dataset.name][recipe_name]
    precision = resolve_precision(recipe.precision, device)
    torch.manual_seed(0)
    model = MLP(math.prod(dataset.input_shape), recipe.hidden, len(dataset.classes), dropout=recipe.dropout)
    model = initialize(model, recipe.init).to(device).train()
    optimizer = build_optimizer(recipe, model)
    generator = torch.Generator().manual_seed(0)
    split = input_norm(recipe, dataset.spec, dataset.train).apply(dataset.train)  # as in training: once, untimed
    inputs, labels = split.inputs, split.labels
    batches = []
    for _ in range(PREPARED_BATCHES):
        index = torch.randint(len(labels), (recipe.batch_size,), generator=generator)
        batches.append((inputs[index].to(device, precision.autocast_dtype), labels[index].to(device)))
    cycle = itertools.cycle(batches)

    def step() -> None:
        train_step(model, optimizer, recipe, precision.autocast_dtype, *next(cycle))  # no lr schedule: it is O(1)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    benchmark.group = f"train step {device.type}"
    benchmark.extra_info.update(
        kind="train_step", dataset=dataset.name, recipe=recipe_name, device=device.type, batch_size=recipe.batch_size,
        forward_macs=forward_macs(model),
        precision=dataclasses.asdict(precision),
    )
    measure(benchmark, step, recipe.batch_size, settings)
