"""Train the lecture-9 MNIST MLP and save it.

Usage:
    python -m pipeline.train [--recipe fast|seed] [--epochs N] [--seed S] [--device auto|cpu|cuda]
                             [--artifacts DIR] [--data-dir DIR] [--mnist-mirror DIR]
    make train RECIPE=seed EPOCHS=3 DEVICE=cpu          # the same, through Make

Writes, atomically, <artifacts>/model.pt (see pipeline.checkpoint) and
<artifacts>/train_metrics.json, and records both in <artifacts>/manifest.json. Prints one summary
line per epoch; a progress bar is shown only when stderr is a terminal. The training state is
checkpointed after every epoch in <artifacts>/checkpoints/, and an interrupted run resumes from
there when re-run (pipeline.resume); <artifacts>/.train.lock keeps a second run out.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from pipeline import resume
from pipeline.atomic import ensure_writable, write_json
from pipeline.checkpoint import save_checkpoint
from pipeline.cli import run_cli
from pipeline.config import Recipe, TrainConfig
from pipeline.data import MNIST, Split, load_mnist_for, ordered_batches, shuffled_batches
from pipeline.device import resolve_device
from pipeline.errors import PipelineError
from pipeline.lock import exclusive_lock
from pipeline.manifest import record
from pipeline.model import MLP, linear_layers
from pipeline.provenance import hardware, library_versions

EVAL_BATCH = 2000  # test-set batch for evaluation: large enough to be GEMM-efficient


@dataclass(frozen=True)
class InputNorm:
    """Scalar standardisation x -> (x - mean) / std, applied to whole tensors once."""

    mean: float = 0.0
    std: float = 1.0

    def apply(self, split: Split) -> Split:
        if (self.mean, self.std) == (0.0, 1.0):
            return split
        return Split((split.images - self.mean) / self.std, split.labels)


@dataclass
class TrainResult:
    model: MLP  # on the CPU, normalisation folded in: takes ToTensor-scale input
    metrics: dict[str, Any]
    input_norm: InputNorm


def train(config: TrainConfig, data: MNIST, checkpoint_dir: Path | None = None) -> TrainResult:
    """Run the recipe on `data`; returns the trained model and its metrics.

    With `checkpoint_dir`, the training state is saved there after every epoch and a run resumes
    from the newest checkpoint it finds (see pipeline.resume); without it, no file is written.
    """
    recipe = config.resolved_recipe
    device = resolve_device(config.device)

    torch.manual_seed(config.seed)  # parameter initialisation
    shuffle = torch.Generator().manual_seed(config.seed)  # batch order, drawn on the CPU
    norm = input_norm(recipe, data.train)
    train_split, test_split = norm.apply(data.train).to(device), norm.apply(data.test).to(device)
    model = MLP(in_features=math.prod(data.input_shape), num_classes=len(data.classes)).to(device)
    optimizer = build_optimizer(recipe, model)
    steps_per_epoch = math.ceil(len(train_split) / recipe.batch_size)
    scheduler = build_scheduler(recipe, optimizer, recipe.epochs * steps_per_epoch)

    history, train_seconds, done = [], 0.0, 0
    if checkpoint_dir:
        fingerprint = {"recipe": dataclasses.asdict(recipe), "seed": config.seed, "device": device.type,
                       "code": resume.code_digest()}
        found = resume.load_latest(checkpoint_dir, fingerprint)
        if found is not None:
            path, state = found
            done, history, train_seconds = state["epoch"], state["history"], state["train_seconds"]
            _restore(state, model, optimizer, scheduler, shuffle)
            print(f"resuming after epoch {done}/{recipe.epochs} from {path}", flush=True)
    for epoch in range(done + 1, recipe.epochs + 1):
        started = time.perf_counter()
        train_loss = _train_epoch(model, optimizer, scheduler, recipe, train_split, shuffle, epoch)
        seconds = time.perf_counter() - started
        train_seconds += seconds
        test_loss, test_accuracy = evaluate(model, test_split)
        history.append(_epoch_record(epoch, train_loss, test_loss, test_accuracy, seconds, len(train_split)))
        print(_summary_line(history[-1], recipe.epochs), flush=True)
        if checkpoint_dir:
            state = _snapshot(model, optimizer, scheduler, shuffle, history, train_seconds)
            resume.save_state(checkpoint_dir, epoch, {"fingerprint": fingerprint, **state})

    model = fold_input_norm(model.cpu(), norm)
    test_loss, test_accuracy = evaluate(model, data.test)  # the saved weights, on raw [0, 1] inputs
    metrics = {
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "train_seconds": train_seconds,
        "epochs": recipe.epochs,
        "recipe": recipe.name,
        "device": str(device),
        "seed": config.seed,
        "samples_per_second": recipe.epochs * len(train_split) / train_seconds,
        "history": history,
        "hardware": hardware(device),
    }
    return TrainResult(model, metrics, norm)


def _snapshot(model, optimizer, scheduler, shuffle, history, train_seconds) -> dict:
    """Everything the next epoch depends on."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "shuffle_rng": shuffle.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": history,
        "train_seconds": train_seconds,
    }


def _restore(state: dict, model, optimizer, scheduler, shuffle) -> None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    shuffle.set_state(state["shuffle_rng"])
    torch.set_rng_state(state["torch_rng"])


def input_norm(recipe: Recipe, train_split: Split) -> InputNorm:
    """The recipe's input standardisation, from the training images (identity if it has none)."""
    if not recipe.normalize_inputs:
        return InputNorm()
    return InputNorm(mean=train_split.images.mean().item(), std=train_split.images.std().item())


def build_optimizer(recipe: Recipe, model: MLP) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
        weight_decay=recipe.weight_decay,
    )


def build_scheduler(recipe: Recipe, optimizer: torch.optim.Optimizer, total_steps: int):
    if recipe.schedule == "constant":
        return None
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=recipe.lr,
            total_steps=total_steps,
            pct_start=recipe.warmup_fraction,
            anneal_strategy="linear",
            cycle_momentum=False,
            div_factor=recipe.div_factor,
            final_div_factor=recipe.final_div_factor,
        )
    raise PipelineError(f"recipe {recipe.name!r}: unknown schedule {recipe.schedule!r}")


def _train_epoch(model, optimizer, scheduler, recipe: Recipe, split: Split, shuffle, epoch: int) -> float:
    """One pass over `split`; returns the mean training loss per sample."""
    model.train()
    loss_sum = torch.zeros((), device=split.images.device)  # summed on device: no sync per step
    batches = shuffled_batches(split, recipe.batch_size, shuffle)
    total = math.ceil(len(split) / recipe.batch_size)
    for images, labels in tqdm(batches, total=total, desc=f"epoch {epoch}", leave=False, disable=None):
        loss_sum += train_step(model, optimizer, scheduler, recipe, images, labels) * len(labels)
    return loss_sum.item() / len(split)


def train_step(model, optimizer, scheduler, recipe: Recipe, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Forward, backward and optimizer (and scheduler) step on one batch; returns the detached loss.

    With `recipe.autocast_dtype` the forward runs under autocast; parameters stay float32.
    """
    autocast_dtype = getattr(torch, recipe.autocast_dtype) if recipe.autocast_dtype else None
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(images.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
        loss = F.cross_entropy(model(images), labels, label_smoothing=recipe.label_smoothing)
    loss.backward()
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.detach()


@torch.inference_mode()
def evaluate(model: MLP, split: Split) -> tuple[float, float]:
    """(mean cross-entropy per sample, accuracy as a fraction) in float32."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for images, labels in ordered_batches(split, EVAL_BATCH):
        logits = model(images)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(dim=1) == labels).sum().item()
    return loss_sum / len(split), correct / len(split)


@torch.no_grad()
def fold_input_norm(model: MLP, norm: InputNorm) -> MLP:
    """Fold (x - mean) / std into the first layer, so the model takes [0, 1] inputs.

    W ((x - m) / s) + b = (W / s) x + (b - (m / s) * W.sum(dim=1)); W is (out, in).
    """
    first = linear_layers(model)[0]
    first.bias -= (norm.mean / norm.std) * first.weight.sum(dim=1)
    first.weight /= norm.std
    return model


def _epoch_record(epoch, train_loss, test_loss, test_accuracy, seconds, samples) -> dict[str, float]:
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "seconds": seconds,
        "samples_per_second": samples / seconds,
    }


def _summary_line(record: dict[str, float], epochs: int) -> str:
    return (
        f"epoch {record['epoch']}/{epochs}  train_loss {record['train_loss']:.4f}  "
        f"test_loss {record['test_loss']:.4f}  test_acc {100 * record['test_accuracy']:.2f}%  "
        f"{record['seconds']:.2f} s  {record['samples_per_second']:,.0f} samples/s"
    )


def save(config: TrainConfig, result: TrainResult, data: MNIST) -> None:
    """Write model.pt and train_metrics.json into the artifacts folder, each atomically."""
    out = Path(config.artifacts)
    resolved = {
        "train": dataclasses.asdict(config),
        "recipe": dataclasses.asdict(config.resolved_recipe),
        "input_norm_folded": dataclasses.asdict(result.input_norm),
    }
    versions = library_versions()
    write_json(out / "train_metrics.json", {**result.metrics, "config": resolved, "versions": versions})
    save_checkpoint(  # last: a complete model.pt means the run is complete
        out / "model.pt",
        result.model,
        input_shape=list(data.input_shape),
        classes=list(data.classes),
        dataset=data.name,
        config=resolved,
        metrics=result.metrics,
        versions=versions,
    )
    record(out, ["train_metrics.json", "model.pt"], "python -m pipeline.train")


def run(config: TrainConfig) -> None:
    """The CLI: one run per ARTIFACTS folder at a time, resumable, outputs recorded in the manifest."""
    resolve_device(config.device)  # fail on a bad DEVICE before touching any file
    out = Path(config.artifacts)
    ensure_writable(out)
    checkpoint_dir = out / "checkpoints"
    with exclusive_lock(out / ".train.lock", "training run"):
        resume.remove_partial_writes(out, checkpoint_dir)
        data = load_mnist_for(config.artifacts, config.data_dir, config.mnist_mirror)
        result = train(config, data, checkpoint_dir)
        save(config, result, data)
        shutil.rmtree(checkpoint_dir)  # model.pt is complete: a later run starts fresh
    m = result.metrics
    print(
        f"{config.artifacts}/model.pt: test accuracy {100 * m['test_accuracy']:.2f}%, "
        f"test loss {m['test_loss']:.4f}, {m['train_seconds']:.2f} s training on {m['device']}"
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(TrainConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
