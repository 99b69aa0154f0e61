"""The MLP: the lecture's shape and size, logits, config widths and dropout, and moving the input
transform and normalisation into the model."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from pipeline.checkpoint import architecture_of
from pipeline.datasets.spec import Split
from pipeline.model import MLP, forward_macs, initialize, linear_layers
from pipeline.normalization import InputNorm


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
    images = (mnist.train.inputs[:2048] - 0.1307) / 0.3081

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
    logits = MLP()(mnist.held_out.inputs[:7])
    assert logits.shape == (7, 10) and logits.dtype == torch.float32


def test_cross_entropy_on_logits_equals_nll_on_log_softmax(mnist):
    """Lecture exercise 9-1: CrossEntropyLoss = LogSoftmax + NLLLoss, so the model returns logits."""
    torch.manual_seed(0)
    logits = MLP()(mnist.train.inputs[:256])
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
    images = mnist.held_out.inputs[:500]
    expected = model((images - norm.mean) / norm.std)
    folded = norm.fold_into(copy.deepcopy(model))
    torch.testing.assert_close(folded(images), expected, rtol=1e-4, atol=1e-4)


def test_folded_log1p_and_per_feature_normalisation_take_raw_counts():
    """Otto's path: log1p and a per-feature standardisation, moved into the model before saving."""
    torch.manual_seed(0)
    counts = torch.poisson(torch.full((64, 93), 0.7))
    norm = InputNorm("log1p", tuple((torch.rand(93) * 0.5).tolist()), tuple((torch.rand(93) + 0.5).tolist()))
    model = MLP(93, (32, 16), 9, dropout=0.3).eval()
    expected = model(norm.apply(Split(counts, torch.zeros(64, dtype=torch.int64))).inputs)
    folded = norm.fold_into(copy.deepcopy(model))
    assert folded.input_transform == "log1p" and model.input_transform == "none"
    torch.testing.assert_close(folded(counts), expected, rtol=1e-4, atol=1e-5)
    assert architecture_of(folded)["input_transform"] == "log1p" and architecture_of(folded)["dropout"] == 0.3


def test_hidden_widths_and_dropout_are_config():
    model = MLP(93, (512, 256), 9, dropout=0.3)
    assert [layer.out_features for layer in linear_layers(model)] == [512, 256, 9]
    x = torch.ones(4, 93)
    assert not torch.equal(model.train()(x), model(x))  # dropout acts in training mode
    assert torch.equal(model.eval()(x), model(x))  # and not in eval mode
    assert set(MLP().state_dict()) == set(MLP(dropout=0.5).state_dict())  # dropout adds no weights
