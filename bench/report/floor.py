"""The compute floor of training: the time the matrix products alone would take at the machine's
own GEMM rate (measured by bench.suites.hardware). 6 FLOPs per multiply-add per sample (2 in the forward
pass, about 4 in the backward), times the forward multiply-adds and the samples. Nothing can train
faster; a ratio of training time to floor near 1 means the step is as fast as the matrix units
allow. Plain arithmetic, no torch: the report uses it too.
"""

from __future__ import annotations

FLOPS_PER_MAC_TRAINING = 6  # forward 2 x MACs; backward about twice the forward


def training_floor_seconds(forward_macs: int, samples: int, gflops: float) -> float:
    """Seconds the matrix products of `samples` training samples take at `gflops`."""
    return FLOPS_PER_MAC_TRAINING * forward_macs * samples / (gflops * 1e9)
