"""Shared fixtures: real MNIST (from $MNIST_MIRROR, else ../shared/data/mnist, else download)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from export.__main__ import ExportConfig
from export.__main__ import run as export_run
from export.parity import ParityConfig
from export.parity import run as parity_run
from pipeline.config import TrainConfig
from pipeline.data import Dataset
from pipeline.datasets.mnist import fetch_mnist, load_mnist
from pipeline.train import save, train

REPO = Path(__file__).resolve().parents[1]

# Parametrize over this to get a CPU test and its GPU twin, which skips with a reason without CUDA.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")],
    ),
]


def _mirror() -> Path | None:
    if os.environ.get("MNIST_MIRROR"):
        return Path(os.environ["MNIST_MIRROR"])
    shared = REPO.parent / "shared" / "data" / "mnist"
    return shared if shared.is_dir() else None


@pytest.fixture(scope="session")
def mnist_mirror() -> Path | None:
    return _mirror()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, mnist_mirror) -> Path:
    """A verified copy of the four decompressed MNIST files, shared by the session."""
    path = tmp_path_factory.mktemp("data")
    fetch_mnist(path, mnist_mirror)
    return path


@pytest.fixture(scope="session")
def mnist(data_dir) -> Dataset:
    return load_mnist(data_dir)


@pytest.fixture
def cli_env(mnist_mirror) -> dict[str, str]:
    """Environment for subprocesses: the repo importable, the mirror named."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if mnist_mirror is not None:
        env["MNIST_MIRROR"] = str(mnist_mirror)
    return env


@pytest.fixture(scope="session")
def exported(tmp_path_factory, mnist, data_dir):
    """Artifacts folder with a one-epoch model, its exports, and a passed parity gate (CPU)."""
    out = tmp_path_factory.mktemp("artifacts")
    config = TrainConfig(recipe="fast", epochs=1, device="cpu", artifacts=str(out))
    save(config, train(config, mnist), mnist)
    export_run(ExportConfig(artifacts=str(out)))
    parity_run(ParityConfig(artifacts=str(out), device="cpu", data_dir=str(data_dir)))
    return out
