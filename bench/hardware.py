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
GEMM_REPEATS = 3


def gemm_gflops(dtype: torch.dtype, device: torch.device, n: int = GEMM_SIZE, repeats: int = GEMM_REPEATS) -> float:
    """The best of `repeats` n x n x n products through F.linear, the op the model's layers run
    (for bf16 on the CPU it is oneDNN's matmul, as in training), in GFLOP/s.

    The best, not the mean: it is the rate the hardware can reach, which makes the floor strict.
    """
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=generator).to(device, dtype)
    b = torch.rand(n, n, generator=generator).to(device, dtype)
    seconds = []
    for _ in range(repeats + 1):  # the first call sets up the kernels and is not counted
        started = time.perf_counter()
        F.linear(a, b)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds.append(time.perf_counter() - started)
    return 2 * n**3 / min(seconds[1:]) / 1e9


def training_floor_seconds(forward_macs: int, samples: int, gflops: float) -> float:
    """Seconds the matrix products of `samples` training samples take at `gflops`."""
    return FLOPS_PER_MAC_TRAINING * forward_macs * samples / (gflops * 1e9)
