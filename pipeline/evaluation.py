"""Held-out evaluation: accuracy and the multi-class log loss, as Kaggle scores it."""

from __future__ import annotations

import torch

from pipeline.batches import ordered_batches
from pipeline.datasets.spec import Split
from pipeline.model import MLP

EVAL_BATCH = 2000  # held-out batch for evaluation: large enough to be GEMM-efficient
LOG_LOSS_CLIP = 1e-15  # probabilities are clipped to [eps, 1 - eps] for the log loss, as Kaggle scores it


@torch.inference_mode()
def evaluate(model: MLP, split: Split) -> tuple[float, float]:
    """(mean log loss per sample, accuracy as a fraction), from float32 logits.

    The log loss is the multi-class one Kaggle scores: each row's probabilities clipped to
    [1e-15, 1 - 1e-15] and renormalised, then -log of the true class's, averaged (in float64).
    """
    model.eval()
    loss_sum, correct = 0.0, 0
    for inputs, labels in ordered_batches(split, EVAL_BATCH):
        logits = model(inputs).float()
        loss_sum += log_loss(torch.softmax(logits.double(), dim=1), labels, reduction="sum")
        correct += (logits.argmax(dim=1) == labels).sum().item()
    return loss_sum / len(split), correct / len(split)


def log_loss(probs: torch.Tensor, labels: torch.Tensor, reduction: str = "mean") -> float:
    """Multi-class log loss of `probs` (N x classes) against int labels, clipped as Kaggle does."""
    clipped = probs.clamp(LOG_LOSS_CLIP, 1 - LOG_LOSS_CLIP)
    clipped = clipped / clipped.sum(dim=1, keepdim=True)
    losses = -clipped.gather(1, labels[:, None]).log()
    return (losses.sum() if reduction == "sum" else losses.mean()).item()
