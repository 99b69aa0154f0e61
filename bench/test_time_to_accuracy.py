"""Time to accuracy: training seconds until the test accuracy first reaches 97% and 98%.

Each recipe is trained once, from scratch, in this process and on this machine; the accuracy is
checked after every epoch and only the training epochs count (evaluation excluded). The seed
recipe's learning rate is constant, so it is run past the lecture's 9 epochs (same training,
continued) to see when, if ever, it reaches each target; the fast recipe runs its own schedule.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from pipeline.config import RECIPES, TrainConfig
from pipeline.model import MLP
from pipeline.train import build_optimizer, train, train_step

TARGETS = (0.97, 0.98)
EPOCHS = {"fast": RECIPES["fast"].epochs, "seed": 15}
WARMUP_STEPS = 20


def time_to(history: list[dict], target: float) -> dict:
    """Cumulative training seconds and epoch at which `target` was first reached, else None."""
    seconds = 0.0
    for record in history:
        seconds += record["seconds"]
        if record["test_accuracy"] >= target:
            return {"seconds": seconds, "epoch": record["epoch"]}
    return {"seconds": None, "epoch": None}


def warm_up(recipe, device, mnist) -> None:
    """Run a few steps first, so one-time kernel and allocator set-up is not timed."""
    model = MLP().to(device)
    optimizer = build_optimizer(recipe, model)
    images, labels = mnist.train.images[: recipe.batch_size].to(device), mnist.train.labels[: recipe.batch_size].to(device)
    for _ in range(WARMUP_STEPS):
        train_step(model, optimizer, None, recipe, images, labels)


@pytest.mark.parametrize("recipe_name", ["fast", "seed"])
def test_time_to_accuracy(benchmark, recipe_name, device, mnist, settings):
    epochs = 1 if settings.smoke else EPOCHS[recipe_name]
    config = TrainConfig(recipe=recipe_name, epochs=epochs, device=device.type)
    warm_up(RECIPES[recipe_name], device, mnist)
    result = benchmark.pedantic(train, args=(config, mnist), rounds=1, iterations=1, warmup_rounds=0)
    history = result.metrics["history"]
    benchmark.group = f"time to accuracy {device.type}"
    benchmark.extra_info.update(
        kind="time_to_accuracy",
        recipe=recipe_name,
        device=device.type,
        epochs=epochs,
        batch_size=RECIPES[recipe_name].batch_size,
        final_test_accuracy=result.metrics["test_accuracy"],
        train_seconds=result.metrics["train_seconds"],
        time_to={f"{target:.2f}": time_to(history, target) for target in TARGETS},
        accuracy_by_epoch=[record["test_accuracy"] for record in history],
        torch_threads=torch.get_num_threads(),
        smoke=settings.smoke,
        recipe_fields=dataclasses.asdict(config.resolved_recipe),
    )
