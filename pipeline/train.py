"""Train the lecture-9 MLP on a dataset (MNIST by default, or Otto) and save it.

Usage:
    python -m pipeline.train [--dataset mnist|otto] [--recipe fast|seed] [--epochs N] [--seed S]
                             [--device auto|cpu|cuda] [--precision auto|bfloat16|off] [--hidden 512,256]
                             [--capture off|cuda-graph] [--train-samples N] [--artifacts DIR]
                             [--data-dir DIR] [--mnist-mirror DIR] [--otto-csv FILE]
    make train RECIPE=seed EPOCHS=3 DEVICE=cpu PRECISION=off     # the same, through Make
    make train DATASET=otto OTTO_CSV=train.csv.zip
    make train NPROC=2                                           # torchrun, DDP (pipeline.distributed)

The device and the precision are decided once, before training, and printed with the reason
(pipeline.device, pipeline.precision); `train_metrics.json` records both.

Writes, atomically, <artifacts>/model.pt (see pipeline.checkpoint) and
<artifacts>/train_metrics.json, and records both in <artifacts>/manifest.json. Prints one summary
line per epoch; a progress bar is shown only when stderr is a terminal. The training state is
checkpointed after every epoch in <artifacts>/checkpoints/, and an interrupted run resumes from
there when re-run (pipeline.resume); <artifacts>/.train.lock keeps a second run out.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from pipeline import distributed, resume
from pipeline.atomic import ensure_writable, write_json
from pipeline.checkpoint import save_checkpoint
from pipeline.cli import run_cli
from pipeline.config import Recipe, TrainConfig
from pipeline.data import Dataset, DataSource, load_dataset, shuffled_batches
from pipeline.device import resolve_device
from pipeline.epoch import BatchSource, copy_state, epoch_record, summary_line, train_epoch, warmup_batches
from pipeline.errors import PipelineError
from pipeline.evaluation import evaluate
from pipeline.lock import exclusive_lock
from pipeline.manifest import record
from pipeline.model import MLP, initialize
from pipeline.normalization import InputNorm, input_norm
from pipeline.precision import resolve_precision
from pipeline.provenance import hardware, library_versions
from pipeline.step import build_optimizer, build_scheduler, check_capture, make_stepper, place_lr_on_device




@dataclass
class TrainResult:
    model: MLP  # on the CPU, input transform and normalisation inside: takes the dataset's raw input
    metrics: dict[str, Any]
    input_norm: InputNorm


def train(config: TrainConfig, data: Dataset, checkpoint_dir: Path | None = None,
          batches: BatchSource = shuffled_batches, recipe: Recipe | None = None,
          world: distributed.World = distributed.SINGLE) -> TrainResult | None:
    """Run the recipe on `data`; returns the trained model and its metrics.

    With `checkpoint_dir`, the training state is saved there after every epoch and a run resumes
    from the newest checkpoint it finds (see pipeline.resume); without it, no file is written.
    `batches` cuts each epoch into batches (default: indexing the resident tensors); `recipe`
    replaces the config's (the ablation bench changes one field at a time). In a world of several
    processes (pipeline.distributed) each rank trains on its slice of every batch and only rank 0
    evaluates, checkpoints and returns a result; the other ranks return None.
    """
    recipe = recipe or config.resolved_recipe
    device = distributed.rank_device(resolve_device(config.device), world)
    check_capture(config.capture, device)
    precision = resolve_precision(recipe.precision, device)
    say = print if world.is_main else _silent
    say(precision.summary(), flush=True)
    if world.distributed:
        batches = distributed.shard_batches(world)

    torch.manual_seed(config.seed)  # parameter initialisation
    shuffle = torch.Generator().manual_seed(config.seed)  # batch order, drawn on the CPU
    train_data = data.train.first(config.train_samples)
    norm = input_norm(recipe, data.spec, train_data)
    # Training inputs are stored in the dtype the first layer computes in: under bf16 autocast it
    # would cast them on every step anyway, so the numbers are the same and each batch is half the bytes.
    train_split = norm.apply(train_data).to(device, precision.autocast_dtype)
    held_out_split = norm.apply(data.held_out).to(device)
    model = MLP(math.prod(data.input_shape), recipe.hidden, len(data.classes), dropout=recipe.dropout)
    model = initialize(model, recipe.init).to(device)
    optimizer = build_optimizer(recipe, model, for_capture=config.capture == "cuda-graph")
    steps_per_epoch = math.ceil(len(train_split) / recipe.batch_size)
    total_steps = max(1, round(recipe.epochs * steps_per_epoch))  # a fractional last epoch: that share of its batches
    scheduler = build_scheduler(recipe, optimizer, total_steps)

    history, train_seconds, done, best = [], 0.0, 0, None
    if checkpoint_dir:
        content = {k: v for k, v in data.info.items() if k != "source"}  # the data, wherever it lies
        fingerprint = {"dataset": data.name, "data": content, "recipe": dataclasses.asdict(recipe),
                       "seed": config.seed, "device": device.type, "precision": precision.dtype,
                       "train_samples": config.train_samples, "capture": config.capture,
                       "code": resume.code_digest()}
        found = resume.load_latest(checkpoint_dir, fingerprint) if world.is_main else None
        done, history, train_seconds, best = _resume(distributed.broadcast(found, world), recipe, config.capture,
                                                     model, optimizer, scheduler, shuffle, say)
    names = data.spec.loss_metric, data.spec.accuracy_metric
    stepper = make_stepper(model, optimizer, scheduler, recipe, precision.autocast_dtype, config.capture,
                           warmup_batches(train_split, recipe.batch_size))
    if world.distributed:  # after the warm-up, which runs on a copy of the bare model
        stepper.model = DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    for epoch in range(done + 1, math.ceil(total_steps / steps_per_epoch) + 1):
        steps = min(steps_per_epoch, total_steps - (epoch - 1) * steps_per_epoch)
        started = time.perf_counter()
        train_loss, samples = train_epoch(stepper, train_split, recipe.batch_size, shuffle, epoch, batches, steps, world)
        seconds = time.perf_counter() - started  # _train_epoch ends by reading the loss: the device is done
        train_seconds += seconds
        if not world.is_main:
            continue  # rank 0 evaluates and checkpoints; the next epoch's first all-reduce waits for it
        held_out_loss, held_out_accuracy = evaluate(model, held_out_split)
        history.append(epoch_record(epoch, train_loss, names, held_out_loss, held_out_accuracy, seconds, samples))
        say(summary_line(history[-1], names, recipe.epochs), flush=True)
        if recipe.keep_best and (best is None or held_out_loss < best["loss"]):
            best = {"epoch": epoch, "loss": held_out_loss, "model": copy_state(model)}
        if checkpoint_dir:
            state = resume.snapshot(model, optimizer, scheduler, shuffle, history, train_seconds)
            resume.save_state(checkpoint_dir, epoch, {"fingerprint": fingerprint, **state, "best": best})

    if not world.is_main:
        return None
    if best is not None:
        model.load_state_dict(best["model"])
        print(f"keeping epoch {best['epoch']}: the lowest {names[0]} ({best['loss']:.4f})", flush=True)
    model = norm.fold_into(model.cpu())
    held_out_loss, held_out_accuracy = evaluate(model, data.held_out)  # the saved weights, on raw inputs
    samples = sum(record["samples"] for record in history)
    metrics = {
        "dataset": data.name,
        "held_out": data.spec.held_out,
        names[1]: held_out_accuracy,
        names[0]: held_out_loss,
        "best_epoch": best["epoch"] if best is not None else None,
        "data": data.info,
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
        # Data parallelism (README "Several processes"): the recipe's batch is the global batch,
        # split over the ranks; the learning rate and schedule are the recipe's, not rescaled.
        "world_size": world.size,
        "backend": distributed.backend_name(device, world),
        "global_batch": recipe.batch_size,
        "per_rank_batch": math.ceil(recipe.batch_size / world.size),
        "lr": recipe.lr,
        "history": history,
        "hardware": hardware(device),
    }
    return TrainResult(model, metrics, norm)


def _resume(found: tuple[Path, dict] | None, recipe: Recipe, capture: str,
            model, optimizer, scheduler, shuffle, say) -> tuple[int, list, float, dict | None]:
    """(epochs done, history, training seconds so far, best epoch kept) from the newest checkpoint
    (`found`, from resume.load_latest), or a fresh start."""
    if found is None:
        return 0, [], 0.0, None
    path, state = found
    resume.restore(state, model, optimizer, scheduler, shuffle)
    if capture == "cuda-graph":
        place_lr_on_device(optimizer, next(model.parameters()).device)
    say(f"resuming after epoch {state['epoch']}/{recipe.epochs:g} from {path}", flush=True)
    return state["epoch"], state["history"], state["train_seconds"], state["best"]


def save(config: TrainConfig, result: TrainResult, data: Dataset) -> None:
    """Write model.pt and train_metrics.json into the artifacts folder, each atomically."""
    out = Path(config.artifacts)
    resolved = {
        "train": dataclasses.asdict(config),
        "recipe": dataclasses.asdict(config.resolved_recipe),
        "input_norm_folded": dataclasses.asdict(result.input_norm),
        "dataset": data.info,
    }
    versions = library_versions()
    write_json(out / "train_metrics.json", {**result.metrics, "config": resolved, "versions": versions})
    save_checkpoint(  # last: a complete model.pt means the run is complete
        out / "model.pt",
        result.model,
        dataset=data.name,
        input_shape=list(data.input_shape),
        input_name=data.spec.input_name,
        input_contract=data.spec.input_contract,
        classes=list(data.classes),
        config=resolved,
        metrics=result.metrics,
        versions=versions,
    )
    record(out, ["train_metrics.json", "model.pt"], "python -m pipeline.train")


def run(config: TrainConfig) -> None:
    """The CLI: one run per ARTIFACTS folder at a time, resumable, outputs recorded in the manifest.
    Under torchrun every rank runs this; rank 0 holds the lock and writes every file."""
    world = distributed.World.from_env()
    device = distributed.rank_device(resolve_device(config.device), world)
    check_capture(config.capture, device)  # bad flags fail before any file is touched
    if world.distributed and config.capture != "off":
        raise PipelineError(f"CAPTURE={config.capture} runs in one process; use NPROC=1 with it")
    out = Path(config.artifacts)
    ensure_writable(out)
    checkpoint_dir = out / "checkpoints"
    distributed.init(world, device)
    try:
        with exclusive_lock(out / ".train.lock", "training run") if world.is_main else contextlib.nullcontext():
            result, data = _run_locked(config, world, out, checkpoint_dir)
    finally:
        distributed.shutdown(world)
    if result is None:
        return
    m, spec = result.metrics, data.spec
    parallel = f", {m['world_size']} processes ({m['backend']})" if world.distributed else ""
    print(
        f"{config.artifacts}/model.pt: {spec.held_out} accuracy {100 * m[spec.accuracy_metric]:.2f}%, "
        f"{spec.held_out} log loss {m[spec.loss_metric]:.4f}, {m['train_seconds']:.2f} s training on "
        f"{m['device']} in {m['precision']['dtype']}{parallel}"
    )


def _run_locked(config: TrainConfig, world: distributed.World, out: Path, checkpoint_dir: Path):
    """Load the data (rank 0 first: it may fetch and verify files), train, and on rank 0 save."""
    if world.is_main:
        resume.remove_partial_writes(out, checkpoint_dir)
        data = load_dataset(config.dataset, DataSource.of(config))
    distributed.barrier(world)
    if not world.is_main:
        data = load_dataset(config.dataset, DataSource.of(config))
    result = train(config, data, checkpoint_dir, world=world)
    if result is not None:
        save(config, result, data)
        shutil.rmtree(checkpoint_dir)  # model.pt is complete: a later run starts fresh
    distributed.barrier(world)  # no rank exits (and tears the group down) before model.pt is written
    return result, data


def _silent(*args, **kwargs) -> None:
    """`print` on ranks other than 0: one copy of every line."""


def main(argv: list[str] | None = None) -> int:
    return run_cli(TrainConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
