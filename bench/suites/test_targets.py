"""The ratios the targets judge, timed so that they hold from run to run: every side of a ratio is
timed in the same alternating rounds, in this one process (handoff.timing), and each ratio
is kept round by round, so the report gives its median and its spread.

  inference (CPU, batch 1 and 1024)  our ONNX artifacts (every variant that passed its gate, with
      the options `make tune` chose and, where those differ from ORT's defaults, with the defaults
      too: a tuned option counts only if it also wins here, in the same rounds), our torch-side
      artifacts (TorchScript, the ExportedProgram, the AOTInductor package), eager PyTorch and the
      peers (torch.compile, OpenVINO), on the same real held-out inputs, and ONNX Runtime's per-call
      floor with each variant's options and each variant's graph up to its first layer (bench.suites.ort_floor)
  training (each device)  one training step of each recipe as `pipeline.train` runs it (the batch
      gathered from the resident data, forward, backward, optimizer step), the matrix products of the
      fast step at its own shapes (its honest compute floor, bench.report.floor), the fast step's
      forward and backward alone and its optimizer's update alone (where its time above the floor
      goes), and one square GEMM in the fast recipe's precision (the old floor's rate, reported beside it)

The report turns them into the targets: the best artifact against eager and each peer, the fast
step against its floor, and the time to accuracy (the steps each recipe needed in its run, at the
step time measured here).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import pytest
import torch

from bench.suites.hardware import gemm_call, step_gemms_call
from bench.suites.measuring import batch_indices, real_inputs, training_run
from bench.suites.ort_floor import ort_first_layer, ort_floor
from bench.suites.runtimes import RUNTIMES
from handoff.artifacts import REFERENCE_VARIANT, VARIANT_FILES
from handoff.ort_options import DEFAULT_OPTIONS, options_for_batch
from handoff.reports import read_variants
from handoff.timing import interleaved
from pipeline.config import RECIPES
from pipeline.model import forward_macs, linear_layers
from pipeline.step import Stepper, forward_backward

TARGET_BATCHES = (1, 1024)  # batch 1: latency; 1024: throughput (bench/report/inference.py)
# runtime ids (bench.suites.runtimes) by prefix; CPU ones only: eager, our ONNX and torch-side artifacts, the peers
CONTENDERS = ("eager", "ort", "torchscript", "exported", "aoti", "compiled", "openvino:")
ROUNDS, SECONDS = 7, 0.03  # alternating rounds, and timed work per call per round (5 calls at least)
SMOKE_ROUNDS, SMOKE_SECONDS = 2, 0.001


def _rounds(settings) -> tuple[int, float]:
    return (SMOKE_ROUNDS, SMOKE_SECONDS) if settings.smoke else (ROUNDS, SECONDS)


def contenders(batch: int, passed: set[str], tuning) -> list[str]:
    """Runtime ids: eager, the peers, and ours for every variant that passed its gate; with ORT's
    defaults beside a variant's tuned options where `make tune` changed them for this batch."""
    ids = []
    for runtime, devices in RUNTIMES.items():
        variant = runtime.partition(":")[2] or REFERENCE_VARIANT
        if "cpu" not in devices or not runtime.startswith(CONTENDERS) or (runtime.startswith("ort") and variant not in passed):
            continue
        ids.append(runtime)
        if runtime.startswith("ort-tuned:") and options_for_batch(tuning.records(variant), batch) != DEFAULT_OPTIONS:
            ids.append(f"ort-defaults:{variant}")
    return ids


@pytest.mark.parametrize("target_batch", TARGET_BATCHES)
def test_inference_targets(benchmark, target_batch, backend_for, tuning, dataset, settings):
    cpu = torch.device("cpu")
    passed = {name for name, entry in read_variants(settings.artifacts).variants.items() if entry.passed}
    built = [backend_for(runtime, cpu) for runtime in contenders(target_batch, passed, tuning)]
    # ORT's per-call floor beside each variant's tuned artifact (the same call and options, one Flatten
    # node), and the artifact's graph up to its first layer: the rungs between the floor and the artifact
    for v in sorted(passed):
        built += [rung(settings.artifacts / VARIANT_FILES[v], v, tuning.records(v)) for rung in (ort_floor, ort_first_layer)]
    inputs = real_inputs(dataset, target_batch)
    calls = {b.name: b.prepare(inputs) for b in built if b.skipped is None}
    times = benchmark.pedantic(interleaved, args=(calls, *_rounds(settings)), rounds=1, iterations=1)
    benchmark.group = "targets"
    benchmark.extra_info.update(
        kind="targets_inference", device="cpu", batch_size=target_batch, dataset=dataset.name,
        variants={b.name: b.details.get("variant", REFERENCE_VARIANT) for b in built},
        seconds_per_call=times,  # backend -> the median of each round
        skipped={b.name: b.skipped for b in built if b.skipped is not None}, smoke=settings.smoke,
    )


def test_training_targets(benchmark, device, dataset, settings):
    steps = {name: _loop_step(name, dataset, device) for name in RECIPES[dataset.name]}
    calls = {name: step for name, (step, _) in steps.items()}
    fast_dtype = steps["fast"][1]["precision"]["dtype"]
    dtype = getattr(torch, fast_dtype)
    calls["gemm"] = gemm_call(dtype, device, settings.gemm_size)  # the old floor's rate, in the fast step's precision
    fast_info = steps["fast"][1]
    calls["step_gemms"] = step_gemms_call(fast_info["layer_shapes"], fast_info["batch_size"], dtype, device)  # the honest floor
    calls.update(_step_parts("fast", dataset, device))  # where the step's time above its floor goes
    times = benchmark.pedantic(interleaved, args=(calls, *_rounds(settings)), rounds=1, iterations=1)
    benchmark.group = f"targets {device.type}"
    benchmark.extra_info.update(
        kind="targets_training", device=device.type, dataset=dataset.name,
        seconds_per_call=times,  # seed, fast (one training step each), gemm, step_gemms, the fast step's parts: each round's median
        batch_size={name: info["batch_size"] for name, (_, info) in steps.items()},
        precision={name: info["precision"] for name, (_, info) in steps.items()},
        forward_macs={name: info["forward_macs"] for name, (_, info) in steps.items()},
        layer_macs={name: [i * o for i, o in info["layer_shapes"]] for name, (_, info) in steps.items()},
        gemm_flops=2 * settings.gemm_size**3, smoke=settings.smoke,
    )


def _step_parts(recipe_name: str, dataset, device: torch.device) -> dict[str, Callable[[], None]]:
    """Two parts of the recipe's step, each alone, on a run of their own (the timed step's model is
    not touched): "<recipe>_forward_backward" (pipeline.step.forward_backward on one batch, gradients
    cleared first as the step clears them) and "<recipe>_optimizer" (the optimizer's update from the
    gradients the first call left). Each does what the step does, so neither can take less than its
    share of the step: forward and backward alone over the floor bound the step's ratio from below."""
    run = training_run(recipe_name, dataset, device)
    images, labels = run.train_split.rows(batch_indices(run)[0])
    autocast_dtype = run.placement.precision.autocast_dtype

    def gradients() -> None:
        run.optimizer.zero_grad(set_to_none=True)
        forward_backward(run.model, run.recipe, autocast_dtype, images, labels)

    gradients()  # the optimizer's calls need gradients from the start
    return {f"{recipe_name}_forward_backward": _synchronized(gradients, device),
            f"{recipe_name}_optimizer": _synchronized(run.optimizer.step, device)}


def _synchronized(call: Callable[[], object], device: torch.device) -> Callable[[], None]:
    """`call`, then a wait for the device's queued work (on CUDA), so the rounds time the work itself."""
    def timed() -> None:
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return timed


def _loop_step(recipe_name: str, dataset, device: torch.device):
    """(a call doing one training step as pipeline.train runs it, what it is): the run training
    builds (model, optimizer, precision, the data normalised and resident on the device), a batch
    gathered by index each call (the scheduler's O(1) step left out)."""
    run = training_run(recipe_name, dataset, device)
    stepper = Stepper(run.model, run.optimizer, None, run.recipe, run.placement.precision.autocast_dtype)
    indices = itertools.cycle(batch_indices(run))

    def step() -> None:
        stepper(*run.train_split.rows(next(indices)))

    info = {"batch_size": run.recipe.batch_size, "precision": dataclasses.asdict(run.placement.precision),
            "forward_macs": forward_macs(run.model),
            "layer_shapes": [(layer.in_features, layer.out_features) for layer in linear_layers(run.model)]}
    return _synchronized(step, device), info
