"""The lecture's network: shape, size, logits, and folding the input normalisation."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from pipeline.model import MLP, forward_macs, initialize, linear_layers
from pipeline.normalization import InputNorm, fold_input_norm


def test_lecture_architecture_and_parameter_count():
    model = MLP()
    widths = [(layer.in_features, layer.out_features) for layer in linear_layers(model)]
    assert widths == [(784, 520), (520, 320), (320, 240), (240, 120), (120, 10)]
    assert sum(p.numel() for p in model.parameters()) == 682_090


def test_forward_multiply_adds_are_counted_from_the_layers():
    assert forward_macs(MLP()) == 784 * 520 + 520 * 320 + 320 * 240 + 240 * 120 + 120 * 10 == 680_880
    assert forward_macs(MLP(in_features=93, hidden=(64,), num_classes=9)) == 93 * 64 + 64 * 9


def test_he_initialisation_keeps_the_signal_through_five_relu_layers(mnist):
    """Why the fast recipe uses it: with torch's default init the last hidden layer's activations
    are far smaller than the first's; with He init they stay of the same order."""
    images = (mnist.train.images[:2048] - 0.1307) / 0.3081

    def scales(model):  # RMS of each hidden layer's output
        x, out = images.flatten(1), []
        for layer in model.hidden:
            x = torch.relu(layer(x))
            out.append(x.pow(2).mean().sqrt().item())
        return out

    torch.manual_seed(0)
    default = scales(MLP())
    he = scales(initialize(MLP(), "kaiming"))
    assert default[-1] / default[0] < 0.1
    assert 0.3 < he[-1] / he[0] < 3
    assert all(layer.bias.abs().sum() == 0 for layer in initialize(MLP(), "kaiming").hidden)


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
