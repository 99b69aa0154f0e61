"""The deployable function: the trained MLP followed by softmax. Both exporters trace this module.

Contract, identical for TorchScript and ONNX:
    input  `image`: float32, N x 1 x 28 x 28, values in [0, 1] (torchvision's ToTensor scale)
    output `probs`: float32, N x 10, each row sums to 1
N is dynamic. Any input standardisation the recipe used is already folded into the first layer
(pipeline.normalization.fold_input_norm), so the head adds only softmax.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.checkpoint import load_checkpoint
from pipeline.model import MLP

INPUT_NAME = "image"
OUTPUT_NAME = "probs"


class SoftmaxHead(nn.Module):
    def __init__(self, model: MLP) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.model(image), dim=1)


def load_head(checkpoint: Path) -> tuple[SoftmaxHead, dict[str, Any]]:
    """The head around `model.pt`'s weights (CPU, eval mode), and the checkpoint's payload."""
    model, payload = load_checkpoint(checkpoint)
    return SoftmaxHead(model).eval(), payload


def contract_text(payload: dict[str, Any]) -> dict[str, str]:
    """The input and output contract in words, from the checkpoint's shapes and classes."""
    shape = " x ".join(str(d) for d in payload["input_shape"])
    return {
        "input": f"{INPUT_NAME}: float32, N x {shape}, values in [0, 1] (torchvision ToTensor scale); N is dynamic",
        "output": f"{OUTPUT_NAME}: float32, N x {len(payload['classes'])}, softmax probabilities, rows sum to 1",
    }


def example_batch(payload: dict[str, Any], batch_size: int = 8, seed: int = 0) -> torch.Tensor:
    """Seeded [0, 1] images to trace with: a batch larger than 1, so no size-1 dim gets specialised."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch_size, *payload["input_shape"], generator=generator)
