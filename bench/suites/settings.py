"""The bench's command-line options (pytest's `--bench-*`) and the settings they make."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from bench.suites.hardware import GEMM_SIZE
from pipeline.datasets.spec import DataSource

SMOKE_GEMM_SIZE = 256
SMOKE_TRAIN_SAMPLES = 2048  # what a smoke-mode training run trains on: two steps of the fast recipe


@dataclass(frozen=True)
class BenchSettings:
    artifacts: Path
    dataset: str
    source: DataSource  # where the dataset's files are (the same fields every stage takes)
    device: str
    batch_sizes: tuple[int, ...]
    threads: int
    smoke: bool

    @property
    def gemm_size(self) -> int:
        """n of the n x n x n product that gives the GEMM rate: compute-bound in a measurement; small in
        smoke mode, whose numbers are not measurements (2048³ takes 0.35 s on one AVX2 core)."""
        return SMOKE_GEMM_SIZE if self.smoke else GEMM_SIZE

    @property
    def gemm_seconds(self) -> float:
        """How long a GEMM rate is timed each time (bench.suites.hardware.gemm_rates)."""
        return 0.05 if self.smoke else 1.0


def add_options(parser) -> None:
    group = parser.getgroup("mnist-bench")
    group.addoption("--bench-artifacts", default="artifacts", help="folder with model.pt and its exports")
    group.addoption("--bench-dataset", default="mnist", help="mnist | otto")
    group.addoption("--bench-data-dir", default=None, help="MNIST folder (default: ARTIFACTS/data)")
    group.addoption("--bench-mnist-mirror", default=os.environ.get("MNIST_MIRROR"),
                    help="folder with the four MNIST .gz files (default: $MNIST_MIRROR)")
    group.addoption("--bench-otto-csv", default=os.environ.get("OTTO_CSV"),
                    help="Otto train.csv, .csv.gz or .csv.zip (default: $OTTO_CSV)")
    group.addoption("--bench-device", default="auto", help="auto | cpu | cuda: which devices to measure")
    group.addoption("--bench-batch-sizes", default="1,64,1024", help="inference batch sizes, comma-separated")
    group.addoption("--bench-threads", type=int, default=os.cpu_count(), help="torch and ORT intra-op threads")
    group.addoption("--bench-smoke", action="store_true", help="a few rounds and one epoch: checks, not numbers")


def settings_of(config) -> BenchSettings:
    artifacts_dir = Path(config.getoption("--bench-artifacts"))
    return BenchSettings(
        artifacts=artifacts_dir,
        dataset=config.getoption("--bench-dataset"),
        source=DataSource(str(artifacts_dir), config.getoption("--bench-data-dir"),
                          config.getoption("--bench-mnist-mirror"), config.getoption("--bench-otto-csv")),
        device=config.getoption("--bench-device"),
        batch_sizes=tuple(int(b) for b in config.getoption("--bench-batch-sizes").split(",")),
        threads=config.getoption("--bench-threads"),
        smoke=config.getoption("--bench-smoke"),
    )
