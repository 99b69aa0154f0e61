"""Input transform and standardisation: computed from the training inputs, applied to whole
tensors once for training, and moved into the model before saving (the transform as the MLP's
`input_transform`, the standardisation folded into the first layer), so every artifact takes the
dataset's raw input."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pipeline.config import Recipe
from pipeline.datasets.spec import DatasetSpec, Split
from pipeline.model import MLP, linear_layers


@dataclass(frozen=True)
class InputNorm:
    """x -> (transform(x) - mean) / std. `mean` and `std` are one number for every input (MNIST)
    or one per feature (Otto); `transform` is "none" or "log1p"."""

    transform: str = "none"
    mean: float | tuple[float, ...] = 0.0
    std: float | tuple[float, ...] = 1.0

    def apply(self, split: Split) -> Split:
        inputs = torch.log1p(split.inputs) if self.transform == "log1p" else split.inputs
        if (self.mean, self.std) == (0.0, 1.0):
            return Split(inputs, split.labels)
        return Split((inputs - torch.tensor(self.mean)) / torch.tensor(self.std), split.labels)

    def fold_into(self, model: MLP) -> MLP:
        """Make `model`, trained on `apply`'s output, take raw inputs: fold the standardisation into
        the first layer and set the transform on the model.

        W ((x - m) / s) + b = (W / s) x + (b - (W / s) m), with s and m broadcast over W's input
        columns (W is out x in).
        """
        first = linear_layers(model)[0]
        with torch.no_grad():
            scaled = first.weight / torch.tensor(self.std)
            first.bias -= scaled @ torch.tensor(self.mean).expand(first.in_features)
            first.weight.copy_(scaled)
        model.input_transform = self.transform
        return model


def input_norm(recipe: Recipe, spec: DatasetSpec, train_split: Split) -> InputNorm:
    """The dataset's input transform and the recipe's standardisation, from the training inputs."""
    if not recipe.normalize_inputs:
        return InputNorm(spec.input_transform)
    transformed = InputNorm(spec.input_transform).apply(train_split).inputs.flatten(1)
    if not spec.per_feature_norm:
        return InputNorm(spec.input_transform, transformed.mean().item(), transformed.std().item())
    std = transformed.std(dim=0)
    std = torch.where(std > 0, std, torch.ones_like(std))  # a constant feature: leave its scale alone
    return InputNorm(spec.input_transform, tuple(transformed.mean(dim=0).tolist()), tuple(std.tolist()))
