"""Throughput ratios between running servers, timed in alternating rounds: the floor target's sides
(mlp-serve, the same stack answering a constant, and mlp-serve's own HTTP path answering a constant)
and the TLS target's (mlp-serve over TLS and in plain HTTP) under the same load, one short window each
per round, the order rotated every round.

    rounds = alternating_rounds({"ours": mine, "app": app, "floor": floor}, requests, clients=64, rounds=5,
                                seconds=2.0, warmup_s=0.5)
    ratio = paired_throughput(rounds, "ours", "floor")      # handoff.timing.Ratio: best round over best round

Why: on the shared 2-core hosts this is measured on, one server's 5-second window and the next
server's moved by a third against each other from run to run (the ratio of the same two servers read
0.31 to 0.48 in six back-to-back pairs), so a ratio of two windows taken minutes apart says more
about the neighbours than about the servers. As handoff.timing does for calls, each side's best round
(the least disturbed) is compared, and the round-by-round ratios are kept for their range.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any, Protocol

from bench.serve.load import Request, run_http
from bench.serve.proc import thread_cpu_s, tree_cpu_s
from handoff.timing import Ratio


class Running(Protocol):  # bench.serve.__main__.Target
    pid: int
    http_port: int


def alternating_rounds(sides: dict[str, Running], requests: list[Request], clients: int, rounds: int,
                       seconds: float, warmup_s: float, tls: dict[str, ssl.SSLContext] | None = None) -> dict[str, Any]:
    """`rounds` rounds of one `seconds` window per server (HTTP, `clients` closed-loop clients; over TLS
    with the context `tls` gives a side), the order rotated by one each round, so each side goes first
    as often as the others over len(sides) rounds; each window's summary (bench.serve.load), by side."""
    names = list(sides)
    windows: dict[str, list[dict]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for side in names[shift:] + names[:shift]:
            target, loop_cpu = sides[side], []
            result = run_http("127.0.0.1", target.http_port, requests, clients, seconds, warmup_s,
                              functools.partial(_probe, target.pid, loop_cpu), (tls or {}).get(side))
            windows[side].append({**result.summary(), "loop_cpu_s": loop_cpu[-1] - loop_cpu[0]})
    return {"clients": clients, "seconds": seconds, "rounds": rounds, "windows": windows}


def _probe(pid: int, loop_cpu: list[float]) -> float:
    """run_http's probe: the server tree's CPU seconds; its main thread's (the event loop's) go to
    `loop_cpu`, read at the same two moments. The loop's share of the window says whether the loop
    was the limit (near 100%) or waited (for the GIL, or on the batcher with nothing else to do)."""
    loop_cpu.append(thread_cpu_s(pid))
    return tree_cpu_s(pid)


def paired_throughput(rounds: dict[str, Any], numerator: str, denominator: str) -> Ratio:
    """numerator's best round's req/s over denominator's, with the range of the per-round ratios."""
    tops, bottoms = ([w["req_per_s"] for w in rounds["windows"][side]] for side in (numerator, denominator))
    ratios = [top / bottom for top, bottom in zip(tops, bottoms, strict=True)]
    return Ratio(max(tops) / max(bottoms), min(ratios), max(ratios), len(ratios))
