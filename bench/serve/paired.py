"""A throughput ratio between two running servers, timed in alternating rounds: the floor target's
two sides (mlp-serve and the same stack answering a constant) under the same load, one short window
each per round, the order swapped every round.

    rounds = alternating_rounds(mine, floor, requests, clients=64, rounds=5, seconds=2.0, warmup_s=0.5)
    ratio = paired_throughput(rounds, "ours", "floor")      # handoff.timing.Ratio: best round over best round

Why: on the shared 2-core hosts this is measured on, one server's 5-second window and the next
server's moved by a third against each other from run to run (the ratio of the same two servers read
0.31 to 0.48 in six back-to-back pairs), so a ratio of two windows taken minutes apart says more
about the neighbours than about the servers. As handoff.timing does for calls, each side's best round
(the least disturbed) is compared, and the round-by-round ratios are kept for their range.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

from bench.serve.load import Request, run_http
from bench.serve.proc import tree_cpu_s
from handoff.timing import Ratio


class Running(Protocol):  # bench.serve.__main__.Target
    pid: int
    http_port: int


def alternating_rounds(ours: Running, floor: Running, requests: list[Request], clients: int, rounds: int,
                       seconds: float, warmup_s: float) -> dict[str, Any]:
    """`rounds` rounds of one `seconds` window per server (HTTP, `clients` closed-loop clients),
    ours first in even rounds and the floor first in odd ones; each window's summary (bench.serve.load)."""
    sides = {"ours": ours, "floor": floor}
    windows: dict[str, list[dict]] = {"ours": [], "floor": []}
    for index in range(rounds):
        order = ("ours", "floor") if index % 2 == 0 else ("floor", "ours")
        for side in order:
            target = sides[side]
            result = run_http("127.0.0.1", target.http_port, requests, clients, seconds, warmup_s,
                              functools.partial(tree_cpu_s, target.pid))
            windows[side].append(result.summary())
    return {"clients": clients, "seconds": seconds, "rounds": rounds, "windows": windows}


def paired_throughput(rounds: dict[str, Any], numerator: str, denominator: str) -> Ratio:
    """numerator's best round's req/s over denominator's, with the range of the per-round ratios."""
    tops, bottoms = ([w["req_per_s"] for w in rounds["windows"][side]] for side in (numerator, denominator))
    ratios = [top / bottom for top, bottom in zip(tops, bottoms, strict=True)]
    return Ratio(max(tops) / max(bottoms), min(ratios), max(ratios), len(ratios))
