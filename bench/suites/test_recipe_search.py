"""The recipe search that chose the fast recipe: candidates trained for two epochs (two of them for fewer) on seeds 0, 1, 2,
each judged on a validation split cut from the training images, never on the test set.

Every candidate is the fast recipe as it was before the search (batch 1024, then 3 epochs), at 2
epochs, with the changes its row names: batch size, learning-rate schedule (peak, warm-up, start),
label smoothing, weight decay, Adam's betas, initialisation, input scaling. It trains on the first
50,000 training images and is judged on the last 10,000 (the MNIST test set stays unseen until the
chosen recipe's time-to-accuracy runs). The report lists each candidate's three accuracies, their
mean and minimum and its training seconds; docs/training.md says which was taken and why. A study
(`make bench-study`); in smoke mode two candidates on seed 0 only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import statistics

import pytest

from bench.suites.settings import SMOKE_TRAIN_SAMPLES
from pipeline.config import RECIPES, TrainConfig
from pipeline.datasets.spec import Dataset, Split
from pipeline.train import train

pytestmark = pytest.mark.study

EPOCHS = 2.0
SEEDS = (0, 1, 2)
VALIDATION = 10_000  # the last training images: the candidates' judge
BEFORE = dataclasses.replace(RECIPES["mnist"]["fast"], batch_size=1024, epochs=EPOCHS)  # the recipe the search began from

# name -> (what changes from BEFORE, Recipe fields to replace)
CANDIDATES = {
    "batch-1024": ("nothing but 2 epochs: the recipe before the search", {}),
    "batch-512": ("batch 512", {"batch_size": 512}),
    "batch-384": ("batch 384", {"batch_size": 384}),
    "batch-256": ("batch 256", {"batch_size": 256}),
    "batch-1024-lr-0.02": ("peak lr 0.02", {"lr": 0.02}),
    "batch-1024-raw": ("raw [0, 1] inputs", {"normalize_inputs": False}),
    "batch-512-lr-0.005": ("batch 512, peak lr 0.005", {"batch_size": 512, "lr": 0.005}),
    "batch-512-lr-0.015": ("batch 512, peak lr 0.015", {"batch_size": 512, "lr": 0.015}),
    "batch-512-warmup-0.2": ("batch 512, 20% warm-up", {"batch_size": 512, "warmup_fraction": 0.2}),
    "batch-512-warmup-0.4": ("batch 512, 40% warm-up", {"batch_size": 512, "warmup_fraction": 0.4}),
    "batch-512-start-lr-25": ("batch 512, start at lr/25", {"batch_size": 512, "div_factor": 25.0}),
    "batch-512-smoothing-0.1": ("batch 512, label smoothing 0.1", {"batch_size": 512, "label_smoothing": 0.1}),
    "batch-512-smoothing-0.3": ("batch 512, label smoothing 0.3", {"batch_size": 512, "label_smoothing": 0.3}),
    "batch-512-decay-5e-5": ("batch 512, weight decay 5e-5", {"batch_size": 512, "weight_decay": 5e-5}),
    "batch-512-beta1-0.8": ("batch 512, Adam beta1 0.8", {"batch_size": 512, "momentum": 0.8}),
    "batch-512-beta2-0.999": ("batch 512, Adam beta2 0.999", {"batch_size": 512, "adam_beta2": 0.999}),
    "batch-512-torch-init": ("batch 512, PyTorch's default init", {"batch_size": 512, "init": "torch"}),
    "batch-512-raw": ("batch 512, raw [0, 1] inputs", {"batch_size": 512, "normalize_inputs": False}),
    "batch-512-1.75-epochs": ("batch 512, 1.75 epochs", {"batch_size": 512, "epochs": 1.75}),
    "batch-512-1.5-epochs": ("batch 512, 1.5 epochs", {"batch_size": 512, "epochs": 1.5}),
}


def validation_split(data: Dataset, count: int) -> Dataset:
    """`data` with its last `count` training samples as the held-out split, trained on the rest."""
    inputs, labels = data.train.inputs, data.train.labels
    return dataclasses.replace(data, train=Split(inputs[:-count], labels[:-count]), held_out=Split(inputs[-count:], labels[-count:]))


def search(data: Dataset, candidates: dict, seeds: tuple[int, ...], train_samples: int | None) -> list[dict]:
    rows = []
    for name, (change, fields) in candidates.items():
        recipe = dataclasses.replace(BEFORE, **fields)
        accuracies, seconds = [], []
        for seed in seeds:
            config = TrainConfig(recipe="fast", seed=seed, device="cpu", train_samples=train_samples)
            with contextlib.redirect_stdout(io.StringIO()):  # 54 runs' progress lines say nothing here
                result = train(config, data, recipe=recipe)
            accuracies.append(result.metrics["test_accuracy"])  # the held-out split's: validation here
            seconds.append(result.metrics["train_seconds"])
        rows.append({"candidate": name, "change": change, "batch_size": recipe.batch_size, "epochs": recipe.epochs,
                     "seeds": list(seeds), "validation_accuracy": accuracies, "mean": statistics.mean(accuracies),
                     "min": min(accuracies), "train_seconds": statistics.mean(seconds)})
    return rows


def test_recipe_search(benchmark, device, mnist, settings):
    if device.type != "cpu":
        pytest.skip("the search is a CPU table")
    candidates = dict(list(CANDIDATES.items())[:2]) if settings.smoke else CANDIDATES
    seeds = SEEDS[:1] if settings.smoke else SEEDS
    data = validation_split(mnist, SMOKE_TRAIN_SAMPLES if settings.smoke else VALIDATION)
    rows = benchmark.pedantic(search, args=(data, candidates, seeds, SMOKE_TRAIN_SAMPLES if settings.smoke else None),
                              rounds=1, iterations=1, warmup_rounds=0)
    assert [row["candidate"] for row in rows] == list(candidates)
    benchmark.group = "recipe search cpu"
    benchmark.extra_info.update(kind="recipe_search", device="cpu", validation_samples=len(data.held_out),
                                train_samples=len(data.train), smoke=settings.smoke, rows=rows)
