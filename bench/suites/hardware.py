"""The machine's matrix-multiply rate, the measured half of the distance to the hardware (the
floor it implies is bench.report.floor's arithmetic): one square GEMM, and the very products one
training step runs at its own shapes."""

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


def step_gemms_call(shapes: list[tuple[int, int]], batch: int, dtype: torch.dtype, device: torch.device) -> Callable[[], None]:
    """The matrix products one training step of an MLP with layers of `shapes` ((in, out) each, in
    order) runs at `batch` rows, and nothing else, waiting for the result: per layer the forward
    F.linear (batch x in -> out), the weight gradient gᵀ·x (out x batch x in), and for every layer
    but the first the input gradient g·W (batch x out x in), as autograd's linear backward runs them.
    bench.report.floor.autograd_flops_per_sample(macs) x batch FLOPs a call."""
    generator = torch.Generator().manual_seed(0)
    layers = []
    for index, (fan_in, fan_out) in enumerate(shapes):
        x, w, g = (torch.rand(*size, generator=generator).to(device, dtype)
                   for size in ((batch, fan_in), (fan_out, fan_in), (batch, fan_out)))
        layers.append((index, x, w, g))

    def products() -> None:
        for index, x, w, g in layers:
            F.linear(x, w)
            g.t().mm(x)
            if index:
                g.mm(w)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return products


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
