"""The deployable function: the trained MLP followed by softmax. Both exporters trace this module.

Contract, identical for TorchScript and ONNX, read from the checkpoint (its dataset's spec):
    input  `image` (MNIST) or `features` (Otto): float32, N x <input shape>, the dataset's raw input
           (MNIST: 1 x 28 x 28 in [0, 1], torchvision's ToTensor scale; Otto: 93 counts)
    output `probs`: float32, N x <classes>, each row sums to 1
N is dynamic. Any input transform and standardisation the recipe used is already inside the
model (pipeline.normalization), so the head adds only softmax.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from handoff.contract import OUTPUT_NAME
from pipeline.checkpoint import load_checkpoint
from pipeline.model import MLP


class SoftmaxHead(nn.Module):
    def __init__(self, model: MLP) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(inputs), dim=1)


def load_head(checkpoint: Path) -> tuple[SoftmaxHead, dict[str, Any]]:
    """The head around `model.pt`'s weights (CPU, eval mode), and the checkpoint's payload."""
    model, payload = load_checkpoint(checkpoint)
    return SoftmaxHead(model).eval(), payload


def contract_text(payload: dict[str, Any]) -> dict[str, str]:
    """The input and output contract in words, from the checkpoint's shapes and classes."""
    shape = " x ".join(str(d) for d in payload["input_shape"])
    return {
        "input": f"{payload['input_name']}: float32, N x {shape}, {payload['input_contract']}; N is dynamic",
        "output": f"{OUTPUT_NAME}: float32, N x {len(payload['classes'])}, softmax probabilities, rows sum to 1",
    }


def example_batch(payload: dict[str, Any], batch_size: int = 8, seed: int = 0) -> torch.Tensor:
    """Seeded [0, 1] inputs to trace with (values do not matter): a batch larger than 1, so no
    size-1 dim gets specialised."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch_size, *payload["input_shape"], generator=generator)
