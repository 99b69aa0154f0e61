"""The lecture's own training loop (PyTorch Zero to All, 09_2_softmax_mnist.py), timed on this
machine: the baseline the fast recipe's ">= 10x shorter" is measured against.

Written the lecture's way, not ours: torchvision's MNIST dataset with `transforms.ToTensor()` (one
PIL image converted per sample), `DataLoader(batch_size=64, shuffle=True)`, the 784-520-320-240-
120-10 ReLU network, log-softmax + NLL loss (our logits + cross-entropy: the same function), plain
`optim.SGD(lr=0.01, momentum=0.5)` with torch's default implementation, the training loss read every
10 batches (the script prints it), 9 epochs with a test pass after each. Only the training loops
are timed; the data is the verified copy under the artifacts folder, read by torchvision. A study
(`make bench-study`), not part of `make bench`.
"""

from __future__ import annotations

import itertools
import time

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from pipeline.model import MLP

pytestmark = pytest.mark.study

EPOCHS = 9  # `for epoch in range(1, 10)`
BATCH_SIZE = 64
LOG_EVERY = 10  # batches between the script's loss printouts (each reads the loss: a sync)
SMOKE_BATCHES = 20


def _loaders(data_dir: str) -> tuple[DataLoader, DataLoader]:
    train_set = datasets.MNIST(root=data_dir, train=True, transform=transforms.ToTensor())
    test_set = datasets.MNIST(root=data_dir, train=False, transform=transforms.ToTensor())
    return DataLoader(train_set, batch_size=BATCH_SIZE, shuffle=True), DataLoader(test_set, batch_size=BATCH_SIZE)


def _train_epoch(model, optimizer, loader, max_batches: int | None) -> None:
    model.train()
    for batch, (data, target) in enumerate(itertools.islice(loader, max_batches)):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(data), target)
        loss.backward()
        optimizer.step()
        if batch % LOG_EVERY == 0:
            loss.item()


@torch.no_grad()
def _accuracy(model, loader) -> float:
    model.eval()
    correct = sum((model(data).argmax(1) == target).sum().item() for data, target in loader)
    return correct / len(loader.dataset)


def test_lecture_script(benchmark, device, settings, mnist):
    if device.type != "cpu":
        pytest.skip("the lecture's script runs on the CPU")
    data_dir = str(settings.source.data_dir or settings.artifacts / "data")  # the `mnist` fixture verified its files
    torch.manual_seed(0)
    train_loader, test_loader = _loaders(data_dir)
    model = MLP()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.5)
    epochs, max_batches = (1, SMOKE_BATCHES) if settings.smoke else (EPOCHS, None)
    history, train_seconds = [], 0.0

    def run() -> None:
        nonlocal train_seconds
        for epoch in range(1, epochs + 1):
            started = time.perf_counter()
            _train_epoch(model, optimizer, train_loader, max_batches)
            train_seconds += time.perf_counter() - started
            history.append({"epoch": epoch, "seconds": train_seconds, "test_accuracy": _accuracy(model, test_loader)})

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.group = "lecture script"
    benchmark.extra_info.update(
        kind="lecture_script", device="cpu", epochs=epochs, batch_size=BATCH_SIZE,
        train_seconds=train_seconds, final_test_accuracy=history[-1]["test_accuracy"],
        accuracy_by_epoch=[h["test_accuracy"] for h in history], torch_threads=torch.get_num_threads(),
        smoke=settings.smoke,
    )
