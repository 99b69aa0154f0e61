"""One training step (forward, loss, backward, optimizer, schedule) and the two ways to run it.

`make_stepper` returns a `Stepper`: calling it with a batch already on the device trains on that
batch and adds the batch's summed loss to `stepper.loss_sum`, a device tensor, so nothing in the
step waits for the device (no `.item()`, no printing):
  - `capture="off"`: the step as ordinary PyTorch calls, on any device;
  - `capture="cuda-graph"`: the step captured once per batch size as a CUDA graph and replayed. This
    small model's GPU step is a few dozen kernels of microseconds each, so launching them from
    Python costs more than running them; a graph launches them all at once.
Either way a few warm-up steps run first (oneDNN/cuBLAS set-up, graph capture); their time is
reported separately from the training time, and what they did to the weights is undone, so the
training itself is the same with or without them.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from handoff.errors import PipelineError
from pipeline.config import Recipe
from pipeline.model import MLP

WARMUP_STEPS = 3  # per batch size: enough for kernel selection and allocator pools (and, on CUDA, graph capture)


def build_optimizer(recipe: Recipe, model: MLP, for_capture: bool = False) -> torch.optim.Optimizer:
    """The recipe's optimizer, fused into one kernel per step where torch has one (CPU, CUDA).

    `for_capture` makes it replayable in a CUDA graph: the learning rate is a device tensor that
    the scheduler updates in place (a captured graph reads the current rate, not the one it was
    captured with), and Adam keeps its step count on the device.
    """
    device = next(model.parameters()).device
    common = {
        "lr": torch.tensor(recipe.lr, device=device) if for_capture else recipe.lr,
        "weight_decay": recipe.weight_decay,
        "fused": device.type in ("cpu", "cuda") or None,
    }
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), momentum=recipe.momentum, nesterov=recipe.nesterov, **common)
    if recipe.optimizer == "adam":
        betas = (recipe.momentum, recipe.adam_beta2)
        return torch.optim.Adam(model.parameters(), betas=betas, capturable=for_capture, **common)
    raise PipelineError(f"recipe {recipe.name!r}: unknown optimizer {recipe.optimizer!r}; use sgd or adam")


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


def train_step(model, optimizer, recipe: Recipe, autocast_dtype: torch.dtype | None,
               images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Forward, backward and optimizer step on one batch; returns the detached mean loss."""
    optimizer.zero_grad(set_to_none=True)
    loss = forward_backward(model, recipe, autocast_dtype, images, labels)
    optimizer.step()
    return loss.detach()


def forward_backward(model, recipe: Recipe, autocast_dtype: torch.dtype | None,
                     images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The loss of one batch and its gradients, added to the parameters' `.grad`; returns the mean loss.
    (The bench times this part of the step alone against the step's compute floor.)

    With `autocast_dtype` the forward runs under autocast (parameters, gradients and the loss stay
    float32). The autocast weight cache is off: each weight is used once per step, so it saves
    nothing, and CUDA graph capture requires it off.
    """
    with torch.autocast(images.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None,
                        cache_enabled=False):
        loss = F.cross_entropy(model(images), labels, label_smoothing=recipe.label_smoothing)
    loss.backward()
    return loss


class Stepper:
    """Eager steps. `loss_sum` (device scalar) accumulates each batch's summed training loss."""

    def __init__(self, model, optimizer, scheduler, recipe: Recipe, autocast_dtype: torch.dtype | None):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.recipe, self.autocast_dtype = recipe, autocast_dtype
        self.loss_sum = torch.zeros((), device=next(model.parameters()).device)
        self.warmup_seconds = 0.0

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        loss = train_step(self.model, self.optimizer, self.recipe, self.autocast_dtype, images, labels)
        self.loss_sum += loss * len(labels)
        if self.scheduler is not None:
            self.scheduler.step()

    def warm_up(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Run the step on a copy of the model with its own optimizer: the real ones are untouched.
        (Not a deepcopy of the optimizer: the scheduler wraps its `step`, and a copy would still
        step the original.)"""
        model = copy.deepcopy(self.model)
        optimizer = build_optimizer(self.recipe, model)
        for images, labels in batches:
            for _ in range(WARMUP_STEPS):
                train_step(model, optimizer, self.recipe, self.autocast_dtype, images, labels)


class CudaGraphStepper(Stepper):
    """The same step, captured as one CUDA graph per batch size and replayed (torch.cuda.graph)."""

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        graph, static_images, static_labels = self.graphs[len(labels)]
        static_images.copy_(images)
        static_labels.copy_(labels)
        graph.replay()  # forward, backward, optimizer step and loss_sum update, as captured
        if self.scheduler is not None:
            self.scheduler.step()  # fills the lr tensor the graph reads

    def warm_up(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        """Warm up on a side stream (as torch.cuda.graph requires), capture, then undo the warm-up."""
        with torch.cuda.device(self.loss_sum.device):  # streams and graphs belong to the current device
            self._capture(batches)

    def _capture(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
        saved = _state_copy(self.model, self.optimizer)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), warnings.catch_warnings():
            # A capturable optimizer warns when stepped outside a capture: here that is the point.
            warnings.filterwarnings("ignore", message=".*capturable=True.*", category=UserWarning)
            for images, labels in batches:
                for _ in range(WARMUP_STEPS):
                    train_step(self.model, self.optimizer, self.recipe, self.autocast_dtype, images, labels)
        torch.cuda.current_stream().wait_stream(side)
        self.graphs = {}
        for images, labels in batches:
            static_images, static_labels = images.clone(), labels.clone()
            # Gradients set to None first, so backward() allocates them from the graph's own pool.
            self.optimizer.zero_grad(set_to_none=True)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                loss = train_step(self.model, self.optimizer, self.recipe, self.autocast_dtype,
                                  static_images, static_labels)
                self.loss_sum += loss * len(static_labels)
            self.graphs[len(labels)] = (graph, static_images, static_labels)
        _restore_in_place(saved, self.model, self.optimizer)  # graphs keep these tensors' addresses
        self.loss_sum.zero_()


def _state_copy(model, optimizer) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    params = list(model.parameters())
    states = [{k: v.clone() for k, v in optimizer.state.get(p, {}).items() if torch.is_tensor(v)} for p in params]
    return [p.detach().clone() for p in params], states


@torch.no_grad()
def _restore_in_place(saved, model, optimizer) -> None:
    """Copy the saved weights and optimizer state back into the same tensors (the graphs hold their
    addresses). State that did not exist before the warm-up becomes zeros, which is what a fresh
    optimizer starts from: SGD's momentum (its first step sets buffer = gradient, and 0 * momentum +
    gradient is that), Adam's moments and its step count."""
    params, states = saved
    for p, value, state in zip(model.parameters(), params, states):
        p.copy_(value)
        for key, current in optimizer.state.get(p, {}).items():
            if not torch.is_tensor(current):
                continue
            if key in state:
                current.copy_(state[key])
            else:
                current.zero_()


def make_stepper(model, optimizer, scheduler, recipe: Recipe, autocast_dtype: torch.dtype | None,
                 capture: str, warmup_batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> Stepper:
    """The stepper for `capture`, warmed up on `warmup_batches` (one per batch size the epoch uses)."""
    cls = CudaGraphStepper if capture == "cuda-graph" else Stepper
    stepper = cls(model, optimizer, scheduler, recipe, autocast_dtype)
    device = stepper.loss_sum.device
    started = time.perf_counter()
    stepper.warm_up(list(warmup_batches))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    stepper.warmup_seconds = time.perf_counter() - started
    return stepper


def place_lr_on_device(optimizer: torch.optim.Optimizer, device: torch.device) -> None:
    """After loading a checkpoint: the lr a captured graph reads must be a tensor on its device."""
    for group in optimizer.param_groups:
        group["lr"] = torch.tensor(float(group["lr"]), device=device)
