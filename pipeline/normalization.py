"""Input standardisation: computed from the training images, applied to whole tensors once, and
folded into the first layer before saving, so every artifact takes raw ToTensor-scale input."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.config import Recipe
from pipeline.data import Split
from pipeline.model import MLP, linear_layers


@dataclass(frozen=True)
class InputNorm:
    """Scalar standardisation x -> (x - mean) / std, applied to whole tensors once."""

    mean: float = 0.0
    std: float = 1.0

    def apply(self, split: Split) -> Split:
        if (self.mean, self.std) == (0.0, 1.0):
            return split
        return Split((split.images - self.mean) / self.std, split.labels)


def input_norm(recipe: Recipe, train_split: Split) -> InputNorm:
    """The recipe's input standardisation, from the training images (identity if it has none)."""
    if not recipe.normalize_inputs:
        return InputNorm()
    return InputNorm(mean=train_split.images.mean().item(), std=train_split.images.std().item())


@torch.no_grad()
def fold_input_norm(model: MLP, norm: InputNorm) -> MLP:
    """Fold (x - mean) / std into the first layer, so the model takes [0, 1] inputs.

    W ((x - m) / s) + b = (W / s) x + (b - (m / s) * W.sum(dim=1)); W is (out, in).
    """
    first = linear_layers(model)[0]
    first.bias -= (norm.mean / norm.std) * first.weight.sum(dim=1)
    first.weight /= norm.std
    return model
