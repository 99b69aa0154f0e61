"""The machine's matrix-multiply rate, the measured half of the distance to the hardware (the
floor it implies is bench.report.floor's arithmetic)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

GEMM_SIZE = 2048  # large enough to be compute-bound on any CPU or GPU this runs on


def gemm_call(dtype: torch.dtype, device: torch.device, n: int = GEMM_SIZE) -> Callable[[], None]:
    """One n x n x n product through F.linear, the op the model's layers run (for bf16 on the CPU
    it is oneDNN's matmul, as in training), waiting for the result; 2 n³ FLOPs a call."""
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=generator).to(device, dtype)
    b = torch.rand(n, n, generator=generator).to(device, dtype)

    def product() -> None:
        F.linear(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return product


def gemm_rates(dtype: torch.dtype, device: torch.device, seconds: float = 1.0, n: int = GEMM_SIZE) -> list[float]:
    """GFLOP/s of repeated gemm_call products for about `seconds` (3 at least).

    A list, not one number: on a shared machine the rate moves (a virtual CPU's second core comes
    and goes), so callers take the median of rates measured around the work they compare with.
    """
    product = gemm_call(dtype, device, n)
    product()  # sets up the kernels; not counted
    rates, deadline = [], time.perf_counter() + seconds
    while len(rates) < 3 or time.perf_counter() < deadline:
        started = time.perf_counter()
        product()
        rates.append(2 * n**3 / (time.perf_counter() - started) / 1e9)
    return rates
