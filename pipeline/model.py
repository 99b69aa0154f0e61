"""The lecture-9 softmax classifier: a ReLU MLP that returns logits (MNIST: 784-520-320-240-120-10).

The model stops at logits because the training loss (CrossEntropyLoss) applies log-softmax
itself; softmax belongs only to the export head, so every runtime is compared on one function.
"""

from __future__ import annotations

import torch
from torch import nn

LECTURE_HIDDEN = (520, 320, 240, 120)
INPUT_TRANSFORMS = ("none", "log1p")  # elementwise, applied to the input before the first layer


class MLP(nn.Module):
    """Fully connected ReLU network; defaults are the lecture's MNIST sizes.

    Input: any tensor of shape (N, *features) whose trailing dims flatten to `in_features`
    (MNIST: N x 1 x 28 x 28; Otto: N x 93). Output: logits, shape (N, num_classes).
    `input_transform` "log1p" maps raw counts x to log(1 + x) first (Otto); training applies it
    to the data once instead and sets it on the model at save (pipeline.normalization).
    `dropout` acts after each hidden ReLU in training mode only; with 0 there is no dropout module.
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: tuple[int, ...] = LECTURE_HIDDEN,
        num_classes: int = 10,
        input_transform: str = "none",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if input_transform not in INPUT_TRANSFORMS:
            raise ValueError(f"unknown input_transform {input_transform!r}; use one of {INPUT_TRANSFORMS}")
        widths = (in_features, *hidden)
        self.input_transform = input_transform
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.out = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if self.input_transform == "log1p":
            x = torch.log1p(x)
        for layer in self.hidden:  # a plain loop over a ModuleList, so TorchScript can compile it
            x = self.dropout(torch.relu(layer(x)))
        return self.out(x)


def linear_layers(model: MLP) -> list[nn.Linear]:
    """Every Linear layer of `model`, input side first."""
    return [*model.hidden, model.out]


INITS = ("torch", "kaiming")


@torch.no_grad()
def initialize(model: MLP, scheme: str) -> MLP:
    """Re-draw the weights (from torch's global RNG) with `scheme`; returns `model`.

    "torch" keeps nn.Linear's default (uniform with variance 1/(3 fan_in), the lecture's): each
    ReLU layer then shrinks the signal, so five layers start slowly. "kaiming" draws the ReLU layers
    He-normal (variance 2/fan_in, which keeps the activations' scale), the output layer LeCun-normal
    (variance 1/fan_in: logits of order 1) and zero biases.
    """
    if scheme == "torch":
        return model
    if scheme != "kaiming":
        raise ValueError(f"unknown init {scheme!r}; use one of {INITS}")
    for layer in model.hidden:
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
        nn.init.zeros_(layer.bias)
    nn.init.normal_(model.out.weight, std=model.out.in_features**-0.5)
    nn.init.zeros_(model.out.bias)
    return model


def forward_macs(model: MLP) -> int:
    """Multiply-adds of one sample's forward pass (the matrix products; ReLU and bias are noise)."""
    return sum(layer.in_features * layer.out_features for layer in linear_layers(model))
