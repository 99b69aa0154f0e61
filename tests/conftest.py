"""Shared fixtures: real MNIST (from $MNIST_MIRROR, else ../shared/data/mnist, else download)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from export.__main__ import ExportConfig
from export.__main__ import run as export_run
from export.parity import ParityConfig
from export.parity import run as parity_run
from export.tune import TuneConfig
from export.tune import run as tune_run
from export.variants import VariantsConfig
from export.variants import run as variants_run
from handoff.lock import exclusive_lock
from pipeline.config import TrainConfig
from pipeline.datasets.mnist import fetch_mnist, load_mnist
from pipeline.datasets.otto_synthetic import write_synthetic_otto
from pipeline.datasets.registry import load_dataset
from pipeline.datasets.spec import Dataset, DataSource
from pipeline.train import save, train

REPO = Path(__file__).resolve().parents[1]
MNIST_BUNDLE_MAX_BATCH = 64  # small, so the server tests can exceed it cheaply
OTTO_ROWS = 6000  # synthetic Otto rows: every class present, small enough to train in seconds
OTTO_EPOCHS = 8  # val accuracy ~78%: rows confident enough that int8 agreement is not a coin toss
# The thread counts torch (OpenMP, MKL) and Inductor's compile workers read at start-up.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCHINDUCTOR_COMPILE_THREADS")
# `make tune` in miniature: the mechanism, not a measurement (tests never depend on this machine's speed)
QUICK_TUNE = TuneConfig(batch_sizes="1,64", seconds=0.002, rounds=1)

# Parametrize over this to get a CPU test and its GPU twin, which skips with a reason without CUDA.
DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")],
    ),
]


def pytest_configure(config) -> None:
    """Under pytest-xdist, each worker and what it starts computes on its share of the cores: two
    workers with two threads each on two cores made every test slower than one worker alone
    (OpenMP's threads wait by spinning). Thread counts change how fast, never what is computed."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))  # the subprocesses' share
        torch.set_num_threads(threads)


# Files whose tests each take minutes: collected first, so the pytest-xdist workers start on them and
# the short tests fill in around them (in collection order the last of them would run alone at the end).
LONG_FIRST = ("test_make.py", "test_bench_smoke.py", "test_distributed.py", "test_gpu_check.py", "test_otto.py")


def pytest_collection_modifyitems(config, items) -> None:
    items.sort(key=lambda item: LONG_FIRST.index(item.path.name) if item.path.name in LONG_FIRST else len(LONG_FIRST))


def worker_threads() -> int:
    """The threads this test process may use (what a bench run it starts is told: --bench-threads)."""
    return torch.get_num_threads()


def _mirror() -> Path | None:
    if os.environ.get("MNIST_MIRROR"):
        return Path(os.environ["MNIST_MIRROR"])
    shared = REPO.parent / "shared" / "data" / "mnist"
    return shared if shared.is_dir() else None


@pytest.fixture(scope="session")
def mnist_mirror() -> Path | None:
    return _mirror()


def shared_folder(tmp_path_factory, name: str, build: Callable[[Path], object]) -> Path:
    """A folder that `build` fills once per test run, whichever pytest-xdist worker asks first; the
    others wait on a lock and reuse it (without xdist: once per session). Nothing else writes into
    it: a test that changes such files works on a copy."""
    root = tmp_path_factory.getbasetemp()
    if "PYTEST_XDIST_WORKER" in os.environ:
        root = root.parent  # the run's folder, which its workers share
    folder = root / f"shared-{name}"
    with exclusive_lock(root / f".shared-{name}.lock", f"fixture {name}", wait=True):
        if not (folder / ".complete").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            (folder / ".complete").touch()
    return folder


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, mnist_mirror) -> Path:
    """A verified copy of the four decompressed MNIST files, shared by the run."""
    return shared_folder(tmp_path_factory, "mnist-data", lambda folder: fetch_mnist(folder, mnist_mirror))


@pytest.fixture(scope="session")
def mnist(data_dir) -> Dataset:
    return load_mnist(data_dir)


def child_env() -> dict[str, str]:
    """This process's environment without pytest-xdist's worker variables: a pytest started from a
    test (the bench's smoke runs, make bench) would take them for its own and switch its benchmarks off."""
    return {key: value for key, value in os.environ.items() if not key.startswith(("PYTEST_XDIST", "PYTEST_CURRENT"))}


@pytest.fixture
def cli_env(mnist_mirror) -> dict[str, str]:
    """Environment for subprocesses: the repo importable, the mirror named."""
    env = {**child_env(), "PYTHONPATH": str(REPO)}
    if mnist_mirror is not None:
        env["MNIST_MIRROR"] = str(mnist_mirror)
    return env


# A child `python -I -c` script's first line: the project unimportable (a name mapped to None fails
# to import), for the artifacts a user loads with their runtime alone.
BLOCK_PROJECT = "import sys; sys.modules.update(pipeline=None, export=None, handoff=None)\n"


def blocked_imports(env: dict[str, str], packages: tuple[str, ...], reason: str) -> dict[str, str]:
    """`env` where importing any of `packages` fails with `reason` (tests/blocked_imports/sitecustomize.py)."""
    return {**env, "PYTHONPATH": f"{REPO / 'tests' / 'blocked_imports'}{os.pathsep}{REPO}",
            "BLOCKED_IMPORTS": ",".join(packages), "BLOCKED_REASON": reason}


def torch_blocked(env: dict[str, str]) -> dict[str, str]:
    """`env` where importing torch or torchvision fails: for the torch-free code."""
    return blocked_imports(env, ("torch", "torchvision"), "torch is blocked in this test")


@pytest.fixture
def no_torch_env(cli_env) -> dict[str, str]:
    return torch_blocked(cli_env)


@contextmanager
def running_server(bundle: Path | None, *args: str, grpc_port: int = 0, startup_s: float = 60,
                   repository: Path | None = None, port: int | None = None) -> Iterator[str]:
    """`mlp-serve` on a free loopback port, torch blocked (gRPC on `grpc_port`, 0: off), serving
    `bundle` or every model of `repository`; yields "127.0.0.1:<port>" once ready (over HTTPS when
    `args` hold --tls-cert). The server must exit 0 when terminated (SIGTERM drains)."""
    port = port or free_port()
    source = ["--repository", str(repository)] if repository is not None else ["--bundle", str(bundle)]
    command = [sys.executable, "-m", "deploy.serve", *source, "--port", str(port), "--grpc-port", str(grpc_port), *args]
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, env=torch_blocked(child_env()), cwd=REPO, stdout=log, stderr=log)
        try:
            _wait_ready(server, port, log, startup_s, "https" if "--tls-cert" in args else "http")
            yield f"127.0.0.1:{port}"
        finally:
            server.terminate()
            code = server.wait(timeout=30)
        if code != 0:
            log.seek(0)
            pytest.fail(f"mlp-serve exited with {code} after SIGTERM: {log.read().decode()[-2000:]}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_ready(server: subprocess.Popen, port: int, log, startup_s: float, scheme: str = "http") -> None:
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            log.seek(0)
            pytest.fail(f"mlp-serve exited with {server.returncode}: {log.read().decode()[-2000:]}")
        try:
            unverified = ssl._create_unverified_context() if scheme == "https" else None  # readiness only; the tests verify
            with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/v2/health/ready", timeout=1, context=unverified) as response:
                if response.status == 200:
                    return
        except OSError:  # not listening yet
            time.sleep(0.1)
    pytest.fail(f"mlp-serve was not ready within {startup_s} s")


def fewer_gate_rows(monkeypatch, rows: int = 512) -> None:
    """The parity gate on the first `rows` held-out rows (and its random inputs): for a test about
    which backends the gate runs or how it fails, not about every row (the `exported` fixture's gate
    judges them all; at batch 1 and 2 ten thousand rows take half a minute)."""
    from export import parity

    full = parity.held_out_rows

    def first_rows(config, dataset):
        held_out = full(config, dataset)
        return dataclasses.replace(held_out, inputs=held_out.inputs[:rows], labels=held_out.labels[:rows])

    monkeypatch.setattr(parity, "held_out_rows", first_rows)


def train_export_tune(config: TrainConfig, data: Dataset, autotune: str = "on", **source: str) -> Path:
    """`make train export tune` in this process, on the CPU, into config.artifacts: train and save,
    export (`autotune`: the AOTInductor compile's kernel timing), the parity gate, the variants
    through theirs, and (quickly) tuned ORT options. `source` says where the data is
    (data_dir=..., otto_csv=...), as the stages' flags do."""
    out = config.artifacts
    save(config, train(config, data), data)
    export_run(ExportConfig(artifacts=out, device="cpu", autotune=autotune))
    parity_run(ParityConfig(artifacts=out, device="cpu", **source))
    variants_run(VariantsConfig(artifacts=out, device="cpu", **source))
    tune_run(dataclasses.replace(QUICK_TUNE, artifacts=out))
    return Path(out)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, mnist, data_dir):
    """Artifacts folder with a one-epoch model, its exports, a passed parity gate (CPU), the int8 and
    fp16 variants through theirs, and (quickly) tuned ORT options: `make train export tune`, once per run."""
    def build(out: Path) -> None:
        train_export_tune(TrainConfig(recipe="fast", epochs=1, device="cpu", artifacts=str(out)), mnist, data_dir=str(data_dir))

    return shared_folder(tmp_path_factory, "artifacts", build)


@pytest.fixture(scope="session")
def mnist_bundle(tmp_path_factory, exported) -> Path:
    """`make deploy` on a copy of the `exported` artifacts (which others copy while it builds): the bundle folder."""
    def build(folder: Path) -> None:
        from deploy.build.__main__ import DeployConfig, run  # tritonclient: not on the GPU machine, whose run needs no bundle

        shutil.copytree(exported, folder / "artifacts")
        run(DeployConfig(artifacts=str(folder / "artifacts"), max_batch=MNIST_BUNDLE_MAX_BATCH))

    return shared_folder(tmp_path_factory, "bundle", build) / "artifacts" / "deploy"


@pytest.fixture(scope="session")
def otto_bundle(tmp_path_factory, otto_artifacts) -> Path:
    """`make deploy VARIANT=int8` on a copy of the run's Otto artifacts: the bundle folder."""
    def build(folder: Path) -> None:
        from deploy.build.__main__ import DeployConfig, run

        shutil.copytree(otto_artifacts, folder / "artifacts", ignore=shutil.ignore_patterns("deploy"))
        run(DeployConfig(artifacts=str(folder / "artifacts"), variant="int8"))

    return shared_folder(tmp_path_factory, "otto-bundle", build) / "artifacts" / "deploy"


@pytest.fixture(scope="session")
def otto_csv(tmp_path_factory) -> Path:
    folder = shared_folder(tmp_path_factory, "otto", lambda f: write_synthetic_otto(f / "train.csv.zip", rows=OTTO_ROWS, seed=0))
    return folder / "train.csv.zip"


@pytest.fixture(scope="session")
def otto(otto_csv) -> Dataset:
    return load_dataset("otto", DataSource(otto_csv=str(otto_csv)))


@pytest.fixture(scope="session")
def otto_artifacts(tmp_path_factory, otto, otto_csv) -> Path:
    """A short Otto run, exported (the AOTInductor compile without its kernel timing: the MNIST
    artifacts have it), through the parity gate (CPU), with its variants and tuned options."""
    def build(out: Path) -> None:
        config = TrainConfig(dataset="otto", epochs=OTTO_EPOCHS, device="cpu", artifacts=str(out), otto_csv=str(otto_csv))
        train_export_tune(config, otto, autotune="off", otto_csv=str(otto_csv))

    return shared_folder(tmp_path_factory, "otto-artifacts", build)


# The browser page (`make web`): onnxruntime-web from web/node_modules (`npm ci` in web/; .ci/run does).
WEB_RUNTIME = REPO / "web" / "node_modules" / "onnxruntime-web" / "package.json"


@pytest.fixture(scope="session")
def web_runtime() -> Path:
    if not WEB_RUNTIME.is_file():
        pytest.skip("onnxruntime-web is not installed: `npm ci` in web/ (make web and .ci/run do)")
    return WEB_RUNTIME.parents[1]  # node_modules


def web_bundle(artifacts: Path, copy_to: Path, node_modules: Path) -> Path:
    """`make deploy VARIANT=int8 web` on a copy of `artifacts` (the session's bundles stay as they are):
    a bundle holding fp32 and int8, with its page."""
    from deploy.build.__main__ import DeployConfig
    from deploy.build.__main__ import run as build_run
    from web.build import WebConfig
    from web.build import run as web_run
    shutil.copytree(artifacts, copy_to, ignore=shutil.ignore_patterns("deploy", "data"))
    build_run(DeployConfig(artifacts=str(copy_to), variant="int8", max_batch=MNIST_BUNDLE_MAX_BATCH))
    web_run(WebConfig(artifacts=str(copy_to), node_modules=str(node_modules)))
    return copy_to / "deploy"


@pytest.fixture(scope="session")
def mnist_web_bundle(tmp_path_factory, exported, web_runtime) -> Path:
    return shared_folder(tmp_path_factory, "web", lambda f: web_bundle(exported, f / "artifacts", web_runtime)) / "artifacts" / "deploy"


@pytest.fixture(scope="session")
def otto_web_bundle(tmp_path_factory, otto_artifacts, web_runtime) -> Path:
    folder = shared_folder(tmp_path_factory, "otto-web", lambda f: web_bundle(otto_artifacts, f / "artifacts", web_runtime))
    return folder / "artifacts" / "deploy"
