"""The lecture-9 softmax classifier: a 784-520-320-240-120-10 ReLU MLP that returns logits.

The model stops at logits because the training loss (CrossEntropyLoss) applies log-softmax
itself; softmax belongs only to the export head, so every runtime is compared on one function.
"""

from __future__ import annotations

import torch
from torch import nn

LECTURE_HIDDEN = (520, 320, 240, 120)


class MLP(nn.Module):
    """Fully connected ReLU network; defaults are the lecture's MNIST sizes.

    Input: any tensor of shape (N, *features) whose trailing dims flatten to `in_features`
    (MNIST: N x 1 x 28 x 28). Output: logits, shape (N, num_classes).
    """

    def __init__(
        self,
        in_features: int = 784,
        hidden: tuple[int, ...] = LECTURE_HIDDEN,
        num_classes: int = 10,
    ) -> None:
        super().__init__()
        widths = (in_features, *hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.out = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer in self.hidden:  # a plain loop over a ModuleList, so TorchScript can compile it
            x = torch.relu(layer(x))
        return self.out(x)


def linear_layers(model: MLP) -> list[nn.Linear]:
    """Every Linear layer of `model`, input side first."""
    return [*model.hidden, model.out]
