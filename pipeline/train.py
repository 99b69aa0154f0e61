"""Train the lecture-9 MNIST MLP and save it.

Usage:
    python -m pipeline.train [--recipe fast|seed] [--epochs N] [--seed S] [--device auto|cpu|cuda]
                             [--precision auto|bfloat16|off] [--capture off|cuda-graph]
                             [--train-samples N] [--artifacts DIR] [--data-dir DIR] [--mnist-mirror DIR]
    make train RECIPE=seed EPOCHS=3 DEVICE=cpu PRECISION=off     # the same, through Make

The device and the precision are decided once, before training, and printed with the reason
(pipeline.device, pipeline.precision); `train_metrics.json` records both.

Writes, atomically, <artifacts>/model.pt (see pipeline.checkpoint) and
<artifacts>/train_metrics.json, and records both in <artifacts>/manifest.json. Prints one summary
line per epoch; a progress bar is shown only when stderr is a terminal. The training state is
checkpointed after every epoch in <artifacts>/checkpoints/, and an interrupted run resumes from
there when re-run (pipeline.resume); <artifacts>/.train.lock keeps a second run out.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterable
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
from pipeline.lock import exclusive_lock
from pipeline.manifest import record
from pipeline.model import MLP, initialize
from pipeline.normalization import InputNorm, fold_input_norm, input_norm
from pipeline.precision import resolve_precision
from pipeline.provenance import hardware, library_versions
from pipeline.step import Stepper, build_optimizer, build_scheduler, check_capture, make_stepper, place_lr_on_device

# (split, batch size, shuffling generator) -> one epoch of (images, labels) batches on the split's device
BatchSource = Callable[[Split, int, torch.Generator], Iterable[tuple[torch.Tensor, torch.Tensor]]]

EVAL_BATCH = 2000  # test-set batch for evaluation: large enough to be GEMM-efficient


@dataclass
class TrainResult:
    model: MLP  # on the CPU, normalisation folded in: takes ToTensor-scale input
    metrics: dict[str, Any]
    input_norm: InputNorm


def train(config: TrainConfig, data: MNIST, checkpoint_dir: Path | None = None,
          batches: BatchSource = shuffled_batches, recipe: Recipe | None = None) -> TrainResult:
    """Run the recipe on `data`; returns the trained model and its metrics.

    With `checkpoint_dir`, the training state is saved there after every epoch and a run resumes
    from the newest checkpoint it finds (see pipeline.resume); without it, no file is written.
    `batches` cuts each epoch into batches (default: indexing the resident tensors); `recipe`
    replaces the config's (the ablation bench changes one field at a time).
    """
    recipe = recipe or config.resolved_recipe
    device = resolve_device(config.device)
    check_capture(config.capture, device)
    precision = resolve_precision(recipe.precision, device)
    print(precision.summary(), flush=True)

    torch.manual_seed(config.seed)  # parameter initialisation
    shuffle = torch.Generator().manual_seed(config.seed)  # batch order, drawn on the CPU
    train_data = data.train.first(config.train_samples)
    norm = input_norm(recipe, train_data)
    # Training images are stored in the dtype the first layer computes in: under bf16 autocast it
    # would cast them on every step anyway, so the numbers are the same and each batch is half the bytes.
    train_split = norm.apply(train_data).to(device, precision.autocast_dtype)
    test_split = norm.apply(data.test).to(device)
    model = initialize(MLP(in_features=math.prod(data.input_shape), num_classes=len(data.classes)), recipe.init)
    model = model.to(device)
    optimizer = build_optimizer(recipe, model, for_capture=config.capture == "cuda-graph")
    steps_per_epoch = math.ceil(len(train_split) / recipe.batch_size)
    total_steps = max(1, round(recipe.epochs * steps_per_epoch))  # a fractional last epoch: that share of its batches
    scheduler = build_scheduler(recipe, optimizer, total_steps)

    history, train_seconds, done = [], 0.0, 0
    if checkpoint_dir:
        fingerprint = {"recipe": dataclasses.asdict(recipe), "seed": config.seed, "device": device.type,
                       "precision": precision.dtype, "train_samples": config.train_samples,
                       "capture": config.capture, "code": resume.code_digest()}
        done, history, train_seconds = _resume(checkpoint_dir, fingerprint, recipe, config.capture,
                                               model, optimizer, scheduler, shuffle)
    stepper = make_stepper(model, optimizer, scheduler, recipe, precision.autocast_dtype, config.capture,
                           warmup_batches(train_split, recipe.batch_size))
    for epoch in range(done + 1, math.ceil(total_steps / steps_per_epoch) + 1):
        steps = min(steps_per_epoch, total_steps - (epoch - 1) * steps_per_epoch)
        started = time.perf_counter()
        train_loss, samples = _train_epoch(stepper, train_split, recipe.batch_size, shuffle, epoch, batches, steps)
        seconds = time.perf_counter() - started  # _train_epoch ends by reading the loss: the device is done
        train_seconds += seconds
        test_loss, test_accuracy = evaluate(model, test_split)
        history.append(_epoch_record(epoch, train_loss, test_loss, test_accuracy, seconds, samples))
        print(_summary_line(history[-1], recipe.epochs), flush=True)
        if checkpoint_dir:
            state = resume.snapshot(model, optimizer, scheduler, shuffle, history, train_seconds)
            resume.save_state(checkpoint_dir, epoch, {"fingerprint": fingerprint, **state})

    model = fold_input_norm(model.cpu(), norm)
    test_loss, test_accuracy = evaluate(model, data.test)  # the saved weights, on raw [0, 1] inputs
    samples = sum(record["samples"] for record in history)
    metrics = {
        "test_accuracy": test_accuracy,
        "test_loss": test_loss,
        "train_seconds": train_seconds,
        "warmup_seconds": stepper.warmup_seconds,  # warm-up (and graph capture), not in train_seconds
        "epochs": recipe.epochs,
        "recipe": recipe.name,
        "device": str(device),
        "precision": dataclasses.asdict(precision),
        "capture": config.capture,
        "seed": config.seed,
        "train_samples": len(train_split),
        "samples_trained": samples,
        "samples_per_second": samples / train_seconds,
        "history": history,
        "hardware": hardware(device),
    }
    return TrainResult(model, metrics, norm)


def _resume(checkpoint_dir: Path, fingerprint: dict, recipe: Recipe, capture: str,
            model, optimizer, scheduler, shuffle) -> tuple[int, list, float]:
    """(epochs done, history, training seconds so far) from the newest checkpoint, or a fresh start."""
    found = resume.load_latest(checkpoint_dir, fingerprint)
    if found is None:
        return 0, [], 0.0
    path, state = found
    resume.restore(state, model, optimizer, scheduler, shuffle)
    if capture == "cuda-graph":
        place_lr_on_device(optimizer, next(model.parameters()).device)
    print(f"resuming after epoch {state['epoch']}/{recipe.epochs:g} from {path}", flush=True)
    return state["epoch"], state["history"], state["train_seconds"]


def warmup_batches(split: Split, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One batch of each size an epoch uses: the full batch and the last, partial one."""
    sizes = sorted({min(batch_size, len(split)), len(split) % batch_size} - {0}, reverse=True)
    return [(split.images[:size], split.labels[:size]) for size in sizes]


def _train_epoch(stepper: Stepper, split: Split, batch_size: int, shuffle, epoch: int, batches: BatchSource,
                 steps: int) -> tuple[float, int]:
    """The first `steps` batches of one shuffled pass over `split` (all of them but in a fractional
    last epoch); returns (mean training loss per sample, samples). The loss is the only device read."""
    stepper.model.train()
    stepper.loss_sum.zero_()
    samples = 0
    for images, labels in tqdm(itertools.islice(batches(split, batch_size, shuffle), steps), total=steps,
                               desc=f"epoch {epoch}", leave=False, disable=None):
        stepper(images, labels)
        samples += len(labels)
    return stepper.loss_sum.item() / samples, samples


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


def _epoch_record(epoch, train_loss, test_loss, test_accuracy, seconds, samples) -> dict[str, float]:
    return {
        "epoch": epoch,
        "train_loss": train_loss,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "seconds": seconds,
        "samples": samples,
        "samples_per_second": samples / seconds,
    }


def _summary_line(record: dict[str, float], epochs: float) -> str:
    return (
        f"epoch {record['epoch']}/{epochs:g}  train_loss {record['train_loss']:.4f}  "
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
    check_capture(config.capture, resolve_device(config.device))  # bad flags fail before any file is touched
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
        f"test loss {m['test_loss']:.4f}, {m['train_seconds']:.2f} s training on {m['device']} "
        f"in {m['precision']['dtype']}"
    )


def main(argv: list[str] | None = None) -> int:
    return run_cli(TrainConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
