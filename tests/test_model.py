"""The lecture's network: shape, size, logits, and folding the input normalisation."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from pipeline.model import MLP, linear_layers
from pipeline.train import InputNorm, fold_input_norm


def test_lecture_architecture_and_parameter_count():
    model = MLP()
    widths = [(layer.in_features, layer.out_features) for layer in linear_layers(model)]
    assert widths == [(784, 520), (520, 320), (320, 240), (240, 120), (120, 10)]
    assert sum(p.numel() for p in model.parameters()) == 682_090


def test_takes_images_and_returns_one_logit_per_class(mnist):
    logits = MLP()(mnist.test.images[:7])
    assert logits.shape == (7, 10) and logits.dtype == torch.float32


def test_cross_entropy_on_logits_equals_nll_on_log_softmax(mnist):
    """Lecture exercise 9-1: CrossEntropyLoss = LogSoftmax + NLLLoss, so the model returns logits."""
    torch.manual_seed(0)
    logits = MLP()(mnist.train.images[:256])
    labels = mnist.train.labels[:256]
    cross_entropy = torch.nn.CrossEntropyLoss()(logits, labels)
    nll = torch.nn.NLLLoss()(F.log_softmax(logits, dim=1), labels)
    torch.testing.assert_close(cross_entropy, nll)
    # ...and applying softmax first (a common mistake) gives a different loss.
    assert not torch.allclose(cross_entropy, torch.nn.CrossEntropyLoss()(F.softmax(logits, dim=1), labels))


def test_folded_normalisation_matches_normalised_inputs(mnist):
    torch.manual_seed(0)
    model = MLP()
    norm = InputNorm(mean=0.1307, std=0.3081)
    images = mnist.test.images[:500]
    expected = model((images - norm.mean) / norm.std)
    folded = fold_input_norm(copy.deepcopy(model), norm)
    torch.testing.assert_close(folded(images), expected, rtol=1e-4, atol=1e-4)
