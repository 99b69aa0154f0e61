"""Benchmark options, fixtures and the measuring helper shared by the suites.

Usage:
    pytest bench/ [--bench-artifacts DIR] [--bench-dataset mnist|otto] [--bench-device auto|cpu|cuda]
                  [--bench-data-dir DIR] [--bench-mnist-mirror DIR] [--bench-otto-csv FILE]
                  [--bench-batch-sizes 1,64,1024] [--bench-threads N] [--bench-smoke]
                  [-m "not study" | -m study] [--benchmark-json FILE]   # pytest's and pytest-benchmark's own
    make bench          # -m "not study": every runtime, variant and peer, the training step, one
                        # time-to-accuracy run per recipe, the targets; then the report
    make bench-study    # -m study: the fast recipe's other seeds, the lecture's script, the ablation

Needs <artifacts>/model.pt, its exports, variants and tuned options (`make train export tune`).
Method: inputs are built and moved to the device before timing; each timed call waits for its
result (CUDA synchronised inside the call, since pytest-benchmark does not); warm-up rounds run
first; torch and ONNX Runtime threads are pinned to --bench-threads and recorded. Ratios the
targets judge are timed in alternating rounds (pipeline.handoff.timing; bench/test_targets.py).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from bench.context import (  # noqa: F401  (pytest hooks: they record the context of every number)
    pytest_benchmark_update_json,
    pytest_benchmark_update_machine_info,
    pytest_runtest_logreport,
)
from bench.runtimes import RUNTIMES, build
from bench.settings import BenchSettings, add_options, settings_of
from export import backends
from export.head import load_head
from export.parity import verify_exports
from pipeline import distributed
from pipeline.config import TrainConfig
from pipeline.data import Dataset, load_dataset
from pipeline.handoff import artifacts
from pipeline.handoff.errors import PipelineError
from pipeline.handoff.manifest import verify
from pipeline.handoff.reports import TuningReport, read_tuning
from pipeline.train import Run, build_run, resolve_placement

SMOKE_ROUNDS = 3  # --bench-smoke: enough to exercise every path, not to measure
ROUND_BUDGET_S = 0.3  # full mode: aim for about this much timed work per benchmark
MIN_ROUNDS, MAX_ROUNDS = 30, 5000
PREPARED_BATCHES = 16  # batches of random rows a training-step benchmark cycles through


def pytest_addoption(parser):
    add_options(parser)


def pytest_configure(config):
    torch.set_num_threads(settings_of(config).threads)


def pytest_generate_tests(metafunc):
    settings = settings_of(metafunc.config)
    if "batch_size" in metafunc.fixturenames:
        metafunc.parametrize("batch_size", settings.batch_sizes)
    if "runtime" in metafunc.fixturenames:  # only the devices each runtime runs on
        pairs = [pytest.param(r, d, id=f"{r}-{d}", marks=[pytest.mark.gpu] if d == "cuda" else [])
                 for r, devices in RUNTIMES.items() for d in devices]
        metafunc.parametrize("runtime,device", pairs, indirect=["device"])
    elif "device" in metafunc.fixturenames:
        metafunc.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)], indirect=True)


@pytest.fixture(scope="session")
def settings(pytestconfig) -> BenchSettings:
    return settings_of(pytestconfig)


@pytest.fixture
def device(request, settings) -> torch.device:
    """The parametrized device; CUDA skips with the reason where it cannot run."""
    if request.param == "cuda":
        if settings.device == "cpu":
            pytest.skip("--bench-device=cpu")
        if not torch.cuda.is_available():
            pytest.skip("no CUDA device")
        backends.disable_tf32()
    return torch.device(request.param)


@pytest.fixture(scope="session")
def dataset(settings) -> Dataset:
    """The dataset named by --bench-dataset, from the --bench-* data options."""
    try:
        return load_dataset(settings.dataset, settings.source)
    except PipelineError as err:
        pytest.fail(str(err), pytrace=False)


@pytest.fixture(scope="session")
def mnist(settings, dataset) -> Dataset:
    """For the benches whose targets are MNIST's (time to accuracy, ablation, the lecture's script)."""
    if settings.dataset != "mnist":
        pytest.skip(f"an MNIST benchmark; this run measures {settings.dataset}")
    return dataset


@pytest.fixture(scope="session")
def exported(settings):
    """(softmax head, checkpoint payload) from the artifacts: missing, changed or stale files are an error."""
    try:
        verify_exports(settings.artifacts)
        verify(settings.artifacts, [*artifacts.VARIANT_FILES.values(), artifacts.VARIANTS, artifacts.ORT_TUNING])
    except PipelineError as err:
        pytest.fail(f"{err} (run `make train export tune` first)", pytrace=False)
    head, payload = load_head(settings.artifacts / artifacts.MODEL)
    if payload["dataset"] != settings.dataset:
        pytest.fail(f"{settings.artifacts / artifacts.MODEL} is a {payload['dataset']} model; this run measures "
                    f"{settings.dataset} (--bench-dataset)", pytrace=False)
    return head, payload


@pytest.fixture(scope="session")
def tuning(settings, exported) -> TuningReport:
    """ort_tuning.json: the session options `make tune` chose per variant and batch size."""
    return read_tuning(settings.artifacts)


@pytest.fixture(scope="session")
def backend_for(settings, exported, tuning):
    """(runtime, device) -> export.backends.Backend, each built once per session."""
    head, _ = exported
    cache: dict[tuple[str, str], backends.Backend] = {}

    def get(runtime: str, device: torch.device) -> backends.Backend:
        key = (runtime, device.type)
        if key not in cache:
            cache[key] = build(runtime, device, head, settings, tuning)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def quality_of(dataset, backend_for):
    """backend -> its held-out accuracy and argmax agreement with float32 ONNX Runtime on the CPU
    (all held-out rows in one call), so every row of the table says what function it timed."""
    inputs, labels = dataset.held_out.inputs.numpy(), dataset.held_out.labels.numpy()
    reference = backend_for("ort", torch.device("cpu")).run(inputs).argmax(axis=1)
    cache: dict[str, dict[str, float]] = {}

    def get(backend: backends.Backend) -> dict[str, float]:
        if backend.name not in cache:
            predicted = np.asarray(backend.run(inputs)).argmax(axis=1)
            cache[backend.name] = {"accuracy": float((predicted == labels).mean()),
                                   "agreement": float((predicted == reference).mean())}
        return cache[backend.name]

    return get


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
    return build_run(config, recipe, dataset, resolve_placement(config, recipe, distributed.SINGLE))


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
