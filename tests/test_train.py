"""Training: accuracy, determinism, device choice, and what `model.pt` holds."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from conftest import DEVICES
from pipeline.config import RECIPES, TrainConfig
from pipeline.device import resolve_device
from pipeline.errors import PipelineError
from pipeline.train import train


@pytest.mark.parametrize("device", DEVICES)
def test_one_epoch_reaches_90_percent(mnist, device):
    result = train(TrainConfig(recipe="fast", epochs=1, device=device), mnist)
    assert result.metrics["test_accuracy"] >= 0.90
    assert result.metrics["device"].startswith(device)


@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_gives_identical_weights(mnist, device):
    config = TrainConfig(recipe="fast", epochs=1, device=device, seed=7)
    first = train(config, mnist).model.state_dict()
    second = train(config, mnist).model.state_dict()
    other = train(dataclasses.replace(config, seed=8), mnist).model.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_fast_recipe_reaches_98_percent(mnist):
    result = train(TrainConfig(recipe="fast"), mnist)
    assert result.metrics["test_accuracy"] >= 0.98


@pytest.mark.slow
def test_seed_recipe_reproduces_the_lecture(mnist):
    result = train(TrainConfig(recipe="seed"), mnist)
    assert result.metrics["test_accuracy"] >= 0.965


def test_seed_recipe_is_lecture_9():
    seed = RECIPES["seed"]
    assert (seed.epochs, seed.batch_size, seed.lr, seed.momentum) == (9, 64, 0.01, 0.5)
    assert (seed.schedule, seed.normalize_inputs, seed.label_smoothing, seed.autocast_dtype) == (
        "constant", False, 0.0, None,
    )


def test_cuda_without_cuda_is_an_error_not_a_fallback(cli_env, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(PipelineError, match="DEVICE=cuda was asked for, but CUDA is not available"):
        resolve_device("cuda")
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "--device", "cuda", "--artifacts", str(tmp_path)],
        capture_output=True, text=True, env=cli_env, check=False,
    )
    assert run.returncode == 2
    assert run.stderr.startswith("error: DEVICE=cuda was asked for, but CUDA is not available")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"recipe": "turbo"}, "unknown recipe 'turbo'"), ({"epochs": -1}, "epochs must be at least 1")],
)
def test_bad_config_is_refused(fields, message):
    with pytest.raises(PipelineError, match=message):
        TrainConfig(**fields)
