"""The compute floor of training: the time the matrix products alone would take. Plain arithmetic, no
torch: the report uses it too.

Two counts, reported side by side:
  - the old one, 6 FLOPs per forward multiply-add per sample (2 forward, "about 4" backward), at the
    rate of one square 2048³ GEMM (bench.suites.hardware.gemm_call);
  - the honest one, the FLOPs autograd really does: the forward product of every layer, its weight
    gradient, and the input gradient of every layer but the first (nothing needs the gradient of the
    data), 2 FLOPs a multiply-add each; timed as those very products at the step's shapes
    (bench.suites.hardware.step_gemms_call), which run slower than one square GEMM.
For the lecture's MLP the first layer (784 x 520) holds 60% of the multiply-adds, so autograd does
4.80 FLOPs per forward multiply-add, not 6: the old floor was generous by a quarter in FLOPs and
flattered by the square GEMM's rate besides.
"""

from __future__ import annotations

FLOPS_PER_MAC_TRAINING = 6  # the old count: forward 2 x MACs; backward "about twice the forward"


def training_floor_seconds(forward_macs: int, samples: int, gflops: float) -> float:
    """Seconds the old count's FLOPs of `samples` training samples take at `gflops`."""
    return FLOPS_PER_MAC_TRAINING * forward_macs * samples / (gflops * 1e9)


def autograd_flops_per_sample(layer_macs: list[int]) -> int:
    """The matrix-product FLOPs of one sample's training step, layers in order: forward and weight
    gradient of every layer, input gradient of every layer after the first, 2 FLOPs a multiply-add."""
    return 2 * (2 * sum(layer_macs) + sum(layer_macs[1:]))
