"""What the suites share besides fixtures: the real inputs a benchmark times, the training run it
steps, and the measuring helper (warm-up, rounds sized to the call, percentiles with their context)."""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.suites.settings import BenchSettings
from pipeline import distributed
from pipeline.config import TrainConfig
from pipeline.datasets.spec import Dataset
from pipeline.placement import resolve_placement
from pipeline.train import Run, build_run

SMOKE_ROUNDS = 3  # --bench-smoke: enough to exercise every path, not to measure
ROUND_BUDGET_S = 0.3  # full mode: aim for about this much timed work per benchmark
MIN_ROUNDS, MAX_ROUNDS = 30, 5000
PREPARED_BATCHES = 16  # batches of random rows a training-step benchmark cycles through


def real_inputs(dataset: Dataset, batch_size: int) -> np.ndarray:
    """The first `batch_size` held-out inputs (repeated if more are asked for than there are)."""
    inputs = dataset.held_out.inputs.numpy()
    reps = -(-batch_size // len(inputs))
    return np.ascontiguousarray(np.concatenate([inputs] * reps)[:batch_size])


def training_run(recipe_name: str, dataset: Dataset, device: torch.device) -> Run:
    """What `pipeline.train` builds before its first step for the recipe on `device` (seed 0): the
    model, optimizer and precision, and the normalised training data, resident in the step's dtype."""
    config = TrainConfig(dataset=dataset.name, recipe=recipe_name, device=device.type)
    recipe = config.resolved_recipe
    placement = resolve_placement(config.device, config.capture, recipe.precision, distributed.SINGLE)
    return build_run(config, recipe, dataset, placement)


def batch_indices(run: Run) -> list[torch.Tensor]:
    """PREPARED_BATCHES seeded batches of random row indices of the recipe's size, on the run's device."""
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(len(run.train_split), (run.recipe.batch_size,), generator=generator).to(run.placement.device)
            for _ in range(PREPARED_BATCHES)]


def measure(benchmark, call, samples_per_call: int, settings: BenchSettings) -> None:
    """Time `call` (one round = one call) and record throughput and latency percentiles."""
    if settings.smoke:
        rounds, warmup = SMOKE_ROUNDS, 1
    else:
        for _ in range(3):
            call()
        started = time.perf_counter()
        call()
        estimate = max(time.perf_counter() - started, 1e-6)
        rounds = int(min(max(ROUND_BUDGET_S / estimate, MIN_ROUNDS), MAX_ROUNDS))
        warmup = max(10, rounds // 10)
    benchmark.pedantic(call, rounds=rounds, iterations=1, warmup_rounds=warmup)
    seconds = np.asarray(benchmark.stats.stats.data)
    p50, p90, p99 = np.percentile(seconds, [50, 90, 99])
    benchmark.extra_info.update(
        samples_per_call=samples_per_call,
        samples_per_second=samples_per_call / p50,
        latency_ms={"p50": 1e3 * p50, "p90": 1e3 * p90, "p99": 1e3 * p99},
        rounds=rounds,
        warmup_rounds=warmup,
        torch_threads=torch.get_num_threads(),
        smoke=settings.smoke,
    )
