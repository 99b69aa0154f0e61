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
targets judge are timed in alternating rounds (handoff.timing; bench/suites/test_targets.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.suites.context import (  # noqa: F401  (pytest hooks: they record the context of every number)
    pytest_benchmark_update_json,
    pytest_benchmark_update_machine_info,
    pytest_runtest_logreport,
)
from bench.suites.runtimes import RUNTIMES, build
from bench.suites.settings import BenchSettings, add_options, settings_of
from export import backends
from export.head import load_head
from export.parity import verify_exports
from handoff import artifacts
from handoff.errors import PipelineError
from handoff.manifest import verify
from handoff.reports import TuningReport, read_tuning
from pipeline.datasets.registry import load_dataset
from pipeline.datasets.spec import Dataset


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
        verify_exports(settings.artifacts)  # the torch artifacts too: TorchScript while this torch wrote it
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
