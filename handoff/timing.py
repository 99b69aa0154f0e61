"""Timing rivals on a shared, noisy machine: every call a comparison involves is timed in the same
alternating rounds, so both sides see the same quiet and busy spells, and a ratio compares each
side's fastest round, the time least moved by the neighbours. `make tune` chooses ORT options with
it and the bench's targets are measured with it; a ratio is reported with the range of its
round-by-round values.

Why the fastest round and not the median of the per-round ratios: a busy spell does not slow every
workload alike. On the 2-core Zen 4 this project is developed on, one spell of several seconds made
a 2048³ GEMM 3% slower, the fast recipe's step 26% and the seed recipe's small-batch step 75%, so a
run whose rounds fell mostly in such a spell gave a median ratio 37% off the next run's; each side's
fastest round gave the same ratios within 3% in both runs.

    times = interleaved({"ours": ours, "eager": eager}, rounds=7, seconds=0.1)
    speedup = paired_ratio(times["eager"], times["ours"])      # Ratio(value=5.1, low=4.8, high=5.4, ...)
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

WARMUP_CALLS = 5  # per rival before the first round: caches, thread pools, lazy initialisation
MIN_CALLS = 5  # per round, however long a call takes
# A pause before each rival's turn: an ONNX Runtime session that allows spinning keeps its idle
# intra-op threads spinning after a call, and they steal the cores from whatever runs next. Two
# identical fp32 sessions at batch 1024 on a 2-core Zen 4: 6.5 ms each after a 50 ms pause; after
# 10 ms, 11-15 ms for whichever ran second.
SETTLE_S = 0.05


def round_median(call: Callable[[], object], seconds: float) -> float:
    """Median seconds per call over about `seconds` of calls (MIN_CALLS at least)."""
    times, deadline = [], time.perf_counter() + seconds
    while len(times) < MIN_CALLS or time.perf_counter() < deadline:
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def interleaved(calls: dict[str, Callable[[], object]], rounds: int, seconds: float,
                settle_s: float = SETTLE_S) -> dict[str, list[float]]:
    """name -> the median seconds per call of each round. Every round times every call once, for
    about `seconds` each, after a pause of `settle_s`; the order rotates from round to round, so no
    call always follows the same one."""
    for call in calls.values():
        for _ in range(WARMUP_CALLS):
            call()
    names = list(calls)
    medians: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            if settle_s:
                time.sleep(settle_s)
            medians[name].append(round_median(calls[name], seconds))
    return medians


@dataclass(frozen=True)
class Ratio:
    """numerator / denominator: `value` from each side's fastest round, `low` and `high` the range
    of the round-by-round ratios."""

    value: float
    low: float
    high: float
    rounds: int

    def text(self) -> str:
        return f"{self.value:.2f}x (round by round {self.low:.2f}-{self.high:.2f}x)"

    def as_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high, "rounds": self.rounds}


def paired_ratio(numerator: list[float], denominator: list[float]) -> Ratio:
    """min(numerator) / min(denominator), with the range of numerator[i] / denominator[i] over the
    rounds i (e.g. the rival's seconds per call over ours: a speedup)."""
    ratios = [n / d for n, d in zip(numerator, denominator, strict=True)]
    return Ratio(min(numerator) / min(denominator), min(ratios), max(ratios), len(ratios))
