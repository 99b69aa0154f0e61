"""The machine's matrix-multiply rate and the training time it implies: the distance to the hardware.

The floor for training is the time the matrix products alone would take at the machine's own GEMM
rate: 6 FLOPs per multiply-add per sample (2 in the forward pass, about 4 in the backward), times
the forward multiply-adds, the samples and the epochs. Nothing can train faster; a ratio of
training time to floor near 1 means the step is as fast as this CPU's matrix units allow.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

FLOPS_PER_MAC_TRAINING = 6  # forward 2 x MACs; backward about twice the forward
GEMM_SIZE = 2048  # large enough to be compute-bound on any CPU or GPU this runs on


def gemm_rates(dtype: torch.dtype, device: torch.device, seconds: float = 1.0, n: int = GEMM_SIZE) -> list[float]:
    """GFLOP/s of repeated n x n x n products through F.linear, the op the model's layers run
    (for bf16 on the CPU it is oneDNN's matmul, as in training), for about `seconds` (3 at least).

    A list, not one number: on a shared machine the rate moves (a virtual CPU's second core comes
    and goes), so callers take the median of rates measured around the work they compare with.
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=generator).to(device, dtype)
    b = torch.rand(n, n, generator=generator).to(device, dtype)
    _product(a, b, device)  # sets up the kernels; not counted
    rates, deadline = [], time.perf_counter() + seconds
    while len(rates) < 3 or time.perf_counter() < deadline:
        started = time.perf_counter()
        _product(a, b, device)
        rates.append(2 * n**3 / (time.perf_counter() - started) / 1e9)
    return rates


def _product(a: torch.Tensor, b: torch.Tensor, device: torch.device) -> None:
    F.linear(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def training_floor_seconds(forward_macs: int, samples: int, gflops: float) -> float:
    """Seconds the matrix products of `samples` training samples take at `gflops`."""
    return FLOPS_PER_MAC_TRAINING * forward_macs * samples / (gflops * 1e9)
