"""Train the lecture-9 MLP on a dataset (MNIST by default, or Otto) and save it.

Usage:
    python -m pipeline.train [--dataset mnist|otto] [--recipe fast|seed] [--epochs N] [--seed S]
                             [--device auto|cpu|cuda] [--precision auto|bfloat16|off] [--hidden 512,256]
                             [--capture off|cuda-graph] [--train-samples N] [--artifacts DIR]
                             [--data-dir DIR] [--mnist-mirror DIR] [--otto-csv FILE]
    make train RECIPE=seed EPOCHS=3 DEVICE=cpu PRECISION=off     # the same, through Make
    make train DATASET=otto OTTO_CSV=train.csv.zip
    make train NPROC=2                                           # torchrun, DDP (pipeline.distributed)

The device, the capture mode and the precision are decided once, before training, and printed in
one line with the reasons (pipeline.placement); `train_metrics.json` records them.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from handoff import artifacts
from handoff.atomic import ensure_writable, write_json
from handoff.cli import run_cli
from handoff.lock import exclusive_lock
from handoff.manifest import record
from pipeline import distributed, resume
from pipeline.batches import shuffled_batches
from pipeline.checkpoint import save_checkpoint
from pipeline.config import Recipe, TrainConfig
from pipeline.datasets.registry import load_dataset
from pipeline.datasets.spec import Dataset, DataSource, Split
from pipeline.epoch import BatchSource, MetricNames, copy_state, epoch_record, summary_line, train_epoch, warmup_batches
from pipeline.evaluation import evaluate
from pipeline.model import MLP, initialize
from pipeline.normalization import InputNorm, input_norm
from pipeline.placement import Placement, resolve_placement
from pipeline.provenance import hardware, library_versions
from pipeline.step import Stepper, build_optimizer, build_scheduler, make_stepper, place_lr_on_device


@dataclass
class Run:
    """Everything one training run works on, built once before the first step."""

    recipe: Recipe
    placement: Placement
    norm: InputNorm  # applied to the data once; folded into the model at the end
    train_split: Split  # normalised, on the device, in the dtype the first layer computes in
    held_out_split: Split  # normalised, on the device, float32
    model: MLP
    optimizer: torch.optim.Optimizer
    scheduler: Any  # None for a constant learning rate
    shuffle: torch.Generator  # batch order, drawn on the CPU
    steps_per_epoch: int
    total_steps: int  # a fractional last epoch runs that share of its batches
    names: MetricNames  # the held-out loss and accuracy keys of the records (test_loss, test_accuracy)

    @property
    def epochs(self) -> int:
        return math.ceil(self.total_steps / self.steps_per_epoch)

    def steps_in(self, epoch: int) -> int:
        return min(self.steps_per_epoch, self.total_steps - (epoch - 1) * self.steps_per_epoch)


@dataclass
class Progress:
    """What the epochs so far produced (restored from a checkpoint when resuming)."""

    done: int = 0  # epochs completed
    history: list[dict[str, float]] = field(default_factory=list)  # one epoch_record each
    train_seconds: float = 0.0
    best: dict | None = None  # keep_best: {"epoch", "loss", "model" (a CPU state_dict)}


@dataclass
class TrainResult:
    model: MLP  # on the CPU, input transform and normalisation inside: takes the dataset's raw input
    metrics: dict[str, Any]
    input_norm: InputNorm


def train(config: TrainConfig, data: Dataset, checkpoint_dir: Path | None = None,
          batches: BatchSource = shuffled_batches, recipe: Recipe | None = None,
          world: distributed.World = distributed.SINGLE, placement: Placement | None = None,
          until: float | None = None) -> TrainResult | None:
    """Run the recipe on `data`; returns the trained model and its metrics.

    With `checkpoint_dir`, the training state is saved there after every epoch and a run resumes
    from the newest checkpoint it finds (see pipeline.resume); without it, no file is written.
    `batches` cuts each epoch into batches (default: indexing the resident tensors); `recipe`
    replaces the config's (the ablation bench changes one field at a time); `placement` is the
    one `resolve_placement` gave (resolved here when not given); `until` stops after the first
    epoch whose held-out accuracy reaches it (time-to-accuracy runs). In a world of several processes
    (pipeline.distributed) each rank trains on its slice of every batch and only rank 0 evaluates,
    checkpoints and returns a result; the other ranks return None.
    """
    recipe = recipe or config.resolved_recipe
    placement = placement or resolve_placement(config.device, config.capture, recipe.precision, world)
    say = print if world.is_main else _silent
    say(placement.summary(), flush=True)
    run = build_run(config, recipe, data, placement)
    fingerprint = _fingerprint(config, data, run) if checkpoint_dir else None
    progress = _start(checkpoint_dir, fingerprint, run, world, say)
    stepper = _stepper(run, world)
    if world.distributed:
        batches = distributed.shard_batches(world)
    for epoch in range(progress.done + 1, run.epochs + 1):
        started = time.perf_counter()
        train_loss, samples = train_epoch(stepper, run.train_split, recipe.batch_size, run.shuffle, epoch, batches,
                                          run.steps_in(epoch), world)
        seconds = time.perf_counter() - started  # train_epoch ends by reading the loss: the device is done
        progress.train_seconds += seconds
        if world.is_main:  # rank 0 evaluates and checkpoints; the next epoch's first all-reduce waits for it
            _record_epoch(run, progress, epoch, train_loss, seconds, samples, say)
            if checkpoint_dir:
                _checkpoint(checkpoint_dir, fingerprint, run, progress, epoch)
        reached = world.is_main and until is not None and progress.history[-1][run.names.accuracy] >= until
        if until is not None and distributed.broadcast(reached, world):
            break  # rank 0 decides: only it evaluated
    if not world.is_main:
        return None
    model = _final_model(run, progress)
    return TrainResult(model, metrics_record(config, data, run, progress, model, stepper, world), run.norm)


def build_run(config: TrainConfig, recipe: Recipe, data: Dataset, placement: Placement) -> Run:
    """Seed, normalise and place the data, and build the model, optimizer and schedule."""
    torch.manual_seed(config.seed)  # parameter initialisation
    train_data = data.train.first(config.train_samples)
    norm = input_norm(recipe, data.spec, train_data)
    model = MLP(math.prod(data.input_shape), recipe.hidden, len(data.classes), dropout=recipe.dropout)
    model = initialize(model, recipe.init).to(placement.device)
    optimizer = build_optimizer(recipe, model, for_capture=placement.capture == "cuda-graph")
    steps_per_epoch = math.ceil(len(train_data) / recipe.batch_size)
    total_steps = max(1, round(recipe.epochs * steps_per_epoch))
    return Run(
        recipe, placement, norm,
        # Under bf16 autocast the first layer would cast the inputs on every step anyway: storing
        # them in bf16 gives the same numbers at half the bytes per batch.
        train_split=norm.apply(train_data).to(placement.device, placement.precision.autocast_dtype),
        held_out_split=norm.apply(data.held_out).to(placement.device),
        model=model, optimizer=optimizer, scheduler=build_scheduler(recipe, optimizer, total_steps),
        shuffle=torch.Generator().manual_seed(config.seed), steps_per_epoch=steps_per_epoch, total_steps=total_steps,
        names=MetricNames(data.spec.loss_metric, data.spec.accuracy_metric),
    )


def _fingerprint(config: TrainConfig, data: Dataset, run: Run) -> dict[str, Any]:
    """What a checkpoint must have been written by to be resumed (pipeline.resume)."""
    return {"dataset": data.name, "data": {k: v for k, v in data.info.items() if k != "source"},  # wherever it lies
            "recipe": dataclasses.asdict(run.recipe), "seed": config.seed, "device": run.placement.device.type,
            "precision": run.placement.precision.dtype, "train_samples": config.train_samples,
            "capture": run.placement.capture, "code": resume.code_digest()}


def _start(checkpoint_dir: Path | None, fingerprint: dict | None, run: Run, world: distributed.World, say) -> Progress:
    """A fresh start, or the state after the newest checkpoint (rank 0 reads it, every rank gets it)."""
    if checkpoint_dir is None:
        return Progress()
    found = resume.load_latest(checkpoint_dir, fingerprint) if world.is_main else None
    found = distributed.broadcast(found, world)
    if found is None:
        return Progress()
    path, state = found
    resume.restore(state, run.model, run.optimizer, run.scheduler, run.shuffle)
    if run.placement.capture == "cuda-graph":
        place_lr_on_device(run.optimizer, run.placement.device)
    say(f"resuming after epoch {state['epoch']}/{run.recipe.epochs:g} from {path}", flush=True)
    return Progress(state["epoch"], state["history"], state["train_seconds"], state["best"])


def _stepper(run: Run, world: distributed.World) -> Stepper:
    stepper = make_stepper(run.model, run.optimizer, run.scheduler, run.recipe, run.placement.precision.autocast_dtype,
                           run.placement.capture, warmup_batches(run.train_split, run.recipe.batch_size))
    if world.distributed:  # after the warm-up, which runs on a copy of the bare model
        device = run.placement.device
        stepper.model = DistributedDataParallel(run.model, device_ids=[device] if device.type == "cuda" else None)
    return stepper


def _record_epoch(run: Run, progress: Progress, epoch: int, train_loss: float, seconds: float, samples: int, say) -> None:
    """Evaluate the epoch's weights on the held-out split, record and print the epoch, keep the best."""
    loss, accuracy = evaluate(run.model, run.held_out_split)
    progress.history.append(epoch_record(epoch, train_loss, run.names, loss, accuracy, seconds, samples))
    say(summary_line(progress.history[-1], run.names, run.recipe.epochs), flush=True)
    _keep_best(run, progress, epoch)


def _keep_best(run: Run, progress: Progress, epoch: int) -> None:
    """keep_best: remember this epoch's weights if its held-out loss is the lowest so far."""
    loss = progress.history[-1][run.names.loss]
    if run.recipe.keep_best and (progress.best is None or loss < progress.best["loss"]):
        progress.best = {"epoch": epoch, "loss": loss, "model": copy_state(run.model)}


def _checkpoint(checkpoint_dir: Path, fingerprint: dict, run: Run, progress: Progress, epoch: int) -> None:
    state = resume.snapshot(run.model, run.optimizer, run.scheduler, run.shuffle, progress.history, progress.train_seconds)
    resume.save_state(checkpoint_dir, epoch, {"fingerprint": fingerprint, **state, "best": progress.best})


def _final_model(run: Run, progress: Progress) -> MLP:
    """The kept epoch's weights on the CPU, taking raw inputs (normalisation folded in)."""
    if progress.best is not None:
        run.model.load_state_dict(progress.best["model"])
        print(f"keeping epoch {progress.best['epoch']}: the lowest {run.names.loss} ({progress.best['loss']:.4f})", flush=True)
    return run.norm.fold_into(run.model.cpu())

def metrics_record(config: TrainConfig, data: Dataset, run: Run, progress: Progress, model: MLP, stepper: Stepper,
                   world: distributed.World) -> dict[str, Any]:
    """train_metrics.json's numbers: the saved weights' held-out metrics, how they were trained, and where."""
    loss, accuracy = evaluate(model, data.held_out)  # the saved weights, on raw inputs
    samples = sum(epoch["samples"] for epoch in progress.history)
    device, recipe = run.placement.device, run.recipe
    return {
        "dataset": data.name,
        "held_out": data.spec.held_out,
        "accuracy_metric": run.names.accuracy,  # which keys below hold the held-out accuracy and loss
        "loss_metric": run.names.loss,
        run.names.accuracy: accuracy,
        run.names.loss: loss,
        "best_epoch": progress.best["epoch"] if progress.best is not None else None,
        "data": data.info,
        "train_seconds": progress.train_seconds,
        "warmup_seconds": stepper.warmup_seconds,  # warm-up (and graph capture), not in train_seconds
        "epochs": recipe.epochs,
        "recipe": recipe.name,
        "device": str(device),
        "precision": dataclasses.asdict(run.placement.precision),
        "capture": run.placement.capture,
        "seed": config.seed,
        "train_samples": len(run.train_split),
        "samples_trained": samples,
        "samples_per_second": samples / progress.train_seconds,
        # Data parallelism (docs/training.md, "Several processes"): the recipe's batch is the global batch,
        # split over the ranks; the learning rate and schedule are the recipe's, not rescaled.
        "world_size": world.size,
        "backend": distributed.backend_name(device, world),
        "global_batch": recipe.batch_size,
        "per_rank_batch": math.ceil(recipe.batch_size / world.size),
        "lr": recipe.lr,
        "history": progress.history,
        "hardware": hardware(device),
    }


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
    write_json(out / artifacts.TRAIN_METRICS, {**result.metrics, "config": resolved, "versions": versions})
    save_checkpoint(  # last: a complete model.pt means the run is complete
        out / artifacts.MODEL,
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
    record(out, [artifacts.TRAIN_METRICS, artifacts.MODEL], "python -m pipeline.train")


def run(config: TrainConfig) -> None:
    """The CLI: one run per ARTIFACTS folder at a time, resumable, outputs recorded in the manifest.
    Under torchrun every rank runs this; rank 0 holds the lock and writes every file."""
    world = distributed.World.from_env()
    # bad flags fail before any file is touched
    placement = resolve_placement(config.device, config.capture, config.resolved_recipe.precision, world)
    out = Path(config.artifacts)
    ensure_writable(out)
    distributed.init(world, placement.device)
    try:
        with exclusive_lock(out / artifacts.TRAIN_LOCK, "training run") if world.is_main else contextlib.nullcontext():
            result, data = _run_locked(config, world, placement, out)
    finally:
        distributed.shutdown(world)
    if result is None:
        return
    m, spec = result.metrics, data.spec
    parallel = f", {m['world_size']} processes ({m['backend']})" if world.distributed else ""
    print(
        f"{config.artifacts}/{artifacts.MODEL}: {spec.held_out} accuracy {100 * m[spec.accuracy_metric]:.2f}%, "
        f"{spec.held_out} log loss {m[spec.loss_metric]:.4f}, {m['train_seconds']:.2f} s training on "
        f"{m['device']} in {m['precision']['dtype']}{parallel}"
    )


def _run_locked(config: TrainConfig, world: distributed.World, placement: Placement, out: Path):
    """Load the data (rank 0 first: it may fetch and verify files), train, and on rank 0 save."""
    checkpoint_dir = out / artifacts.CHECKPOINTS
    if world.is_main:
        resume.remove_partial_writes(out, checkpoint_dir)
        data = load_dataset(config.dataset, DataSource.of(config))
    distributed.barrier(world)
    if not world.is_main:
        data = load_dataset(config.dataset, DataSource.of(config))
    result = train(config, data, checkpoint_dir, world=world, placement=placement)
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
