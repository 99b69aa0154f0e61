"""Benchmark options, fixtures and the measuring helper shared by the suites.

Usage:
    pytest bench/ [--bench-artifacts DIR] [--bench-data-dir DIR] [--bench-device auto|cpu|cuda]
                  [--bench-batch-sizes 1,64,1024] [--bench-threads N] [--bench-smoke]
                  [--benchmark-json FILE]                       # pytest-benchmark's own options
    make bench                                                  # the same, then the report

Needs <artifacts>/model.pt, model.torchscript.pt and model.onnx (`make train export`).
Method: inputs are built and moved to the device before timing; each timed call waits for its
result (CUDA synchronised inside the call, since pytest-benchmark does not); warm-up rounds run
first; torch and ONNX Runtime threads are pinned to --bench-threads and recorded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bench.hardware import gemm_rates
from bench.peers import package_version
from bench.runtimes import RUNTIMES, build
from export import backends as runtimes
from export.head import load_head
from export.parity import check_inputs
from export.variants import VARIANT_FILES
from pipeline.data import Dataset, DataSource, load_dataset
from pipeline.errors import PipelineError
from pipeline.manifest import verify
from pipeline.precision import resolve_precision
from pipeline.provenance import cpu_flags, cpu_model

SMOKE_ROUNDS = 3  # --bench-smoke: enough to exercise every path, not to measure
ROUND_BUDGET_S = 1.5  # full mode: aim for about this much timed work per benchmark
MIN_ROUNDS, MAX_ROUNDS = 30, 5000


@dataclass(frozen=True)
class BenchSettings:
    artifacts: Path
    dataset: str
    data_dir: str | None
    device: str
    batch_sizes: tuple[int, ...]
    threads: int
    smoke: bool


def pytest_addoption(parser):
    group = parser.getgroup("mnist-bench")
    group.addoption("--bench-artifacts", default="artifacts", help="folder with model.pt and its exports")
    group.addoption("--bench-dataset", default="mnist", help="mnist | otto (Otto reads $OTTO_CSV)")
    group.addoption("--bench-data-dir", default=None, help="MNIST folder (default: ARTIFACTS/data)")
    group.addoption("--bench-device", default="auto", help="auto | cpu | cuda: which devices to measure")
    group.addoption("--bench-batch-sizes", default="1,64,1024", help="inference batch sizes, comma-separated")
    group.addoption("--bench-threads", type=int, default=os.cpu_count(), help="torch and ORT intra-op threads")
    group.addoption("--bench-smoke", action="store_true", help="a few rounds and one epoch: checks, not numbers")


def settings_of(config) -> BenchSettings:
    return BenchSettings(
        artifacts=Path(config.getoption("--bench-artifacts")),
        dataset=config.getoption("--bench-dataset"),
        data_dir=config.getoption("--bench-data-dir"),
        device=config.getoption("--bench-device"),
        batch_sizes=tuple(int(b) for b in config.getoption("--bench-batch-sizes").split(",")),
        threads=config.getoption("--bench-threads"),
        smoke=config.getoption("--bench-smoke"),
    )


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
        runtimes.disable_tf32()
    return torch.device(request.param)


@pytest.fixture(scope="session")
def dataset(settings) -> Dataset:
    """The dataset named by --bench-dataset (MNIST from $MNIST_MIRROR, Otto from $OTTO_CSV)."""
    source = DataSource(str(settings.artifacts), settings.data_dir, os.environ.get("MNIST_MIRROR"),
                        os.environ.get("OTTO_CSV"))
    try:
        return load_dataset(settings.dataset, source)
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
        check_inputs(settings.artifacts)
        verify(settings.artifacts, [*VARIANT_FILES.values(), "variants.json", "ort_tuning.json"])
    except PipelineError as err:
        pytest.fail(f"{err} (run `make train export tune` first)", pytrace=False)
    head, payload = load_head(settings.artifacts / "model.pt")
    if payload["dataset"] != settings.dataset:
        pytest.fail(f"{settings.artifacts / 'model.pt'} is a {payload['dataset']} model; this run measures "
                    f"{settings.dataset} (--bench-dataset)", pytrace=False)
    return head, payload


@pytest.fixture(scope="session")
def tuning(settings, exported) -> dict:
    """ort_tuning.json: the session options `make tune` chose per variant and batch size."""
    return json.loads((settings.artifacts / "ort_tuning.json").read_text())


@pytest.fixture(scope="session")
def backend_for(settings, exported, tuning):
    """(runtime, device) -> export.backends.Backend, each built once per session."""
    head, _ = exported
    cache: dict[tuple[str, str], runtimes.Backend] = {}

    def get(runtime: str, device: torch.device) -> runtimes.Backend:
        key = (runtime, device.type)
        if key not in cache:
            cache[key] = build(runtime, device, head, settings.artifacts, settings.threads, tuning["variants"])
        return cache[key]

    return get


@pytest.fixture(scope="session")
def quality_of(dataset, backend_for):
    """backend -> its held-out accuracy and argmax agreement with float32 ONNX Runtime on the CPU
    (all held-out rows in one call), so every row of the table says what function it timed."""
    inputs, labels = dataset.held_out.inputs.numpy(), dataset.held_out.labels.numpy()
    reference = backend_for("ort", torch.device("cpu")).run(inputs).argmax(axis=1)
    cache: dict[str, dict[str, float]] = {}

    def get(backend: runtimes.Backend) -> dict[str, float]:
        if backend.name not in cache:
            predicted = np.asarray(backend.run(inputs)).argmax(axis=1)
            cache[backend.name] = {"accuracy": float((predicted == labels).mean()),
                                   "agreement": float((predicted == reference).mean())}
        return cache[backend.name]

    return get


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


# --- context kept with every number -------------------------------------------------------------

_skipped: list[dict[str, str]] = []


def pytest_runtest_logreport(report):
    if report.skipped and report.when in ("setup", "call"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append({"test": report.nodeid, "reason": reason.removeprefix("Skipped: ")})


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["skipped"] = list(_skipped)


def pytest_benchmark_update_machine_info(config, machine_info):
    settings = settings_of(config)
    machine_info.update(
        dataset=settings.dataset,
        cpu_model=cpu_model(),
        cpu_cores=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        ort_intra_op_threads=settings.threads,
        versions={
            "torch": str(torch.__version__),
            "onnxruntime": ort.__version__,
            "onnx": onnx.__version__,
            "numpy": np.__version__,
            "cuda": torch.version.cuda,
            "openvino": package_version("openvino"),
        },
        ort_available_providers=ort.get_available_providers(),
        ort_session_options=runtimes.session_options(settings.threads)[1],
        ort_tuning=_tuning_summary(settings.artifacts / "ort_tuning.json"),
        cpu_flags=cpu_flags(),
        precision=_precision_choices(settings),
        fp32_gemm_gflops=statistics.median(gemm_rates(torch.float32, torch.device("cpu"))),
        gpu=_gpu_info(),
    )


def _tuning_summary(path: Path) -> dict | None:
    """variant -> batch size -> the options `make tune` chose there (what differs from ORT's defaults)."""
    if not path.exists():
        return None
    tuning = json.loads(path.read_text())
    return {v: {bs: t["summary"] for bs, t in e["batch_sizes"].items()} for v, e in tuning["variants"].items()}


def _precision_choices(settings: BenchSettings) -> dict[str, dict]:
    """What `auto` picks on each device measured here, with the reason (as training prints it)."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and settings.device != "cpu" else [])
    return {d: dataclasses.asdict(resolve_precision("auto", torch.device(d))) for d in devices}


def _gpu_info() -> dict | None:
    if not torch.cuda.is_available():
        return None
    query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
    try:
        driver = subprocess.run(query, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as err:
        driver = f"unknown ({type(err).__name__})"
    return {"name": torch.cuda.get_device_name(0), "driver": driver, "count": torch.cuda.device_count()}
