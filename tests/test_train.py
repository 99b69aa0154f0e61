"""Training: accuracy, determinism, device choice, and what `model.pt` holds."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from conftest import DEVICES
from handoff.errors import PipelineError
from pipeline.config import RECIPES, TrainConfig
from pipeline.placement import native_bf16, resolve_device
from pipeline.train import train


@pytest.mark.parametrize("device", DEVICES)
def test_one_epoch_reaches_90_percent(mnist, device):
    result = train(TrainConfig(recipe="fast", epochs=1, device=device), mnist)
    assert result.metrics["test_accuracy"] >= 0.90
    assert result.metrics["device"].startswith(device)


@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_gives_identical_weights(mnist, device):
    config = TrainConfig(recipe="fast", epochs=1, device=device, seed=7, train_samples=8192)  # 16 steps: enough to differ
    first = train(config, mnist).model.state_dict()
    second = train(config, mnist).model.state_dict()
    other = train(dataclasses.replace(config, seed=8), mnist).model.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


@pytest.mark.parametrize("precision", ["off", "bfloat16"])
def test_fast_recipe_reaches_98_percent_in_each_precision(mnist, precision):
    """float32 everywhere (CI); bf16 where this CPU runs it natively (emulated, it would take minutes)."""
    if precision == "bfloat16" and not native_bf16(torch.device("cpu"))[0]:
        pytest.skip(f"no native bf16 here: {native_bf16(torch.device('cpu'))[1]}")
    result = train(TrainConfig(recipe="fast", device="cpu", precision=precision), mnist)
    assert result.metrics["precision"]["dtype"] == {"off": "float32", "bfloat16": "bfloat16"}[precision]
    assert result.metrics["test_accuracy"] >= 0.98


@pytest.mark.slow
def test_seed_recipe_reproduces_the_lecture(mnist):
    result = train(TrainConfig(recipe="seed"), mnist)
    assert result.metrics["test_accuracy"] >= 0.965


def test_seed_recipe_is_lecture_9():
    seed = RECIPES["mnist"]["seed"]
    assert (seed.epochs, seed.batch_size, seed.lr, seed.momentum) == (9, 64, 0.01, 0.5)
    assert (seed.schedule, seed.normalize_inputs, seed.label_smoothing, seed.init, seed.precision) == (
        "constant", False, 0.0, "torch", "off",
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


def test_cuda_graph_capture_without_cuda_is_an_error(tmp_path, cli_env):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "--device", "cpu", "--capture", "cuda-graph", "--artifacts", str(tmp_path)],
        capture_output=True, text=True, env=cli_env, check=False,
    )
    assert run.returncode == 2
    assert run.stderr == "error: CAPTURE=cuda-graph needs a CUDA device, but training runs on cpu; use CAPTURE=off\n"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_graph_training_matches_eager(mnist):
    """Capture changes how the step is launched, not what it computes."""
    config = TrainConfig(recipe="fast", epochs=1, device="cuda", seed=3, train_samples=8192 + 100)  # a partial last batch
    eager = train(config, mnist)
    graph = train(dataclasses.replace(config, capture="cuda-graph"), mnist)
    assert graph.metrics["capture"] == "cuda-graph" and graph.metrics["warmup_seconds"] > 0
    for name, tensor in eager.model.state_dict().items():
        torch.testing.assert_close(graph.model.state_dict()[name], tensor, rtol=1e-3, atol=1e-4, msg=name)
    assert abs(graph.metrics["history"][0]["train_loss"] - eager.metrics["history"][0]["train_loss"]) < 1e-3


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"recipe": "turbo"}, "unknown recipe 'turbo'"),
        ({"epochs": -1}, "epochs must be positive, got -1"),
        ({"precision": "fp8"}, "unknown PRECISION='fp8'; use auto, bfloat16, off"),
        ({"capture": "graphs"}, "unknown CAPTURE='graphs'; use off, cuda-graph"),
        ({"train_samples": 0}, "train_samples must be at least 1"),
    ],
)
def test_bad_config_is_refused(fields, message):
    with pytest.raises(PipelineError, match=message):
        TrainConfig(**fields)
