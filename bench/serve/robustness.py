"""mlp-serve under abuse, measured from outside: overload, stalled clients, SIGTERM with requests in
flight, memory over many requests. `make bench-serve` runs them at full size (serve.md); the tests
(tests/test_serving.py) run them small.

    result = overload(bundle, data, clients=256, seconds=30, queue_size=64)   # only right answers and 503s?
    result = stalled(bundle, data, stalled_clients=100, seconds=5)             # do half-sent requests hold anyone up?
    result = drain(bundle, data, in_flight=32)                                 # SIGTERM: all answered at once, exit 0?
    result = memory(bundle, data, checkpoints=(10_000, 100_000))               # RSS after each count
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from bench.serve.load import OK, Request, parse_head, run_http
from bench.serve.proc import free_port, wait_ready

MODEL = "mnist_mlp"


@contextmanager
def server(bundle: Path, *flags: str) -> Iterator[tuple[subprocess.Popen, int, IO[bytes]]]:
    """mlp-serve (HTTP only) on a free port: (process, port, its log, a temporary file)."""
    port = free_port()
    command = [sys.executable, "-m", "deploy.serve", "--bundle", str(bundle), "--port", str(port), "--grpc-port", "0", *flags]
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: a chatty server never blocks on it
        process = subprocess.Popen(command, stdout=log, stderr=log)
        try:
            wait_ready(process, port, MODEL)
            yield process, port, log
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=60)


def queued(port: int) -> float:
    """The server's mlp_queue_requests gauge: requests waiting for a batch now, over its model versions."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        values = [float(line.split()[-1]) for line in response.read().decode().splitlines() if line.startswith("mlp_queue_requests{")]
    if not values:
        raise RuntimeError("no mlp_queue_requests in /metrics")
    return sum(values)


def wait_queued(port: int, count: int, timeout_s: float = 60) -> None:
    """Until the server shows `count` requests waiting for a batch (the timeout guards a hang; it is not
    a speed requirement)."""
    deadline = time.monotonic() + timeout_s
    while queued(port) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{count} requests were not all queued within {timeout_s} s")
        time.sleep(0.02)


def overload(bundle: Path, requests: list[Request], clients: int, seconds: float, queue_size: int) -> dict:
    """`clients` closed-loop clients against a queue of `queue_size`: statuses, wrong answers, p99."""
    with server(bundle, "--max-queue-size", str(queue_size)) as (_, port, _log):
        result = run_http("127.0.0.1", port, requests, clients, seconds, warmup_s=0.5).summary()
    clean = set(result["statuses"]) <= {str(OK), "503"} and result["wrong"] == 0
    return {"clients": clients, "seconds": seconds, "queue_size": queue_size, "clean": clean,
            **{k: result[k] for k in ("requests", "statuses", "wrong", "req_per_s", "p50_ms", "p99_ms", "first_error")}}


def stalled(bundle: Path, requests: list[Request], stalled_clients: int, seconds: float, clients: int = 8) -> dict:
    """p99 of `clients` normal clients with and without `stalled_clients` connections that sent half a
    request (headers promise the whole body) and wait; the stalled ones must still be open."""
    with server(bundle) as (_, port, _log):
        alone = run_http("127.0.0.1", port, requests, clients, seconds, warmup_s=0.5).summary()
        half = requests[0].wire[: len(requests[0].wire) // 2]
        sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(stalled_clients)]
        for sock in sockets:
            sock.sendall(half)
        beside = run_http("127.0.0.1", port, requests, clients, seconds, warmup_s=0.5).summary()
        still_open = sum(_open_and_unanswered(sock) for sock in sockets)
        for sock in sockets:
            sock.close()
    return {"stalled_clients": stalled_clients, "clients": clients, "still_open_unanswered": still_open,
            "alone": {k: alone[k] for k in ("req_per_s", "p50_ms", "p99_ms", "statuses")},
            "beside_stalled": {k: beside[k] for k in ("req_per_s", "p50_ms", "p99_ms", "statuses")}}


def _open_and_unanswered(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        sock.recv(1)  # b"": the server closed it; bytes: it answered
    except BlockingIOError:  # nothing to read and not closed: still waiting for the rest of the body
        return True
    except OSError:
        return False
    return False


def drain(bundle: Path, requests: list[Request], in_flight: int) -> dict:
    """Queue `in_flight` requests behind a one-minute queue delay (batches larger than all of them),
    SIGTERM the server once /metrics shows them all waiting: are all answered at once (the drain
    must not wait out the delay), and does it exit 0?"""
    flags = ("--max-queue-delay-us", "60000000", "--max-batch", str(in_flight * 2))
    with server(bundle, *flags) as (process, port, log):
        statuses, took = asyncio.run(_signal_once_queued(process, port, requests[:in_flight]))
        code = process.wait(timeout=60)
        log.seek(0)
        text = log.read().decode(errors="replace")
    return {"in_flight": in_flight, "answered_200": statuses.count(OK), "statuses": sorted(set(map(str, statuses))),
            "exit_code": code, "seconds_from_sigterm_to_all_answered": round(took, 3), "drain_logged": "draining" in text}


async def _signal_once_queued(process: subprocess.Popen, port: int, requests: list[Request]) -> tuple[list, float]:
    async def one(request: Request) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request.wire)
        status, length, _ = parse_head(await reader.readuntil(b"\r\n\r\n"))
        await reader.readexactly(length or 0)
        writer.close()
        return status

    tasks = [asyncio.ensure_future(one(r)) for r in requests]
    await asyncio.to_thread(wait_queued, port, len(requests))
    process.send_signal(signal.SIGTERM)
    signalled = time.perf_counter()
    statuses = await asyncio.gather(*tasks, return_exceptions=True)
    return [s if isinstance(s, int) else repr(s) for s in statuses], time.perf_counter() - signalled


def memory(bundle: Path, requests: list[Request], checkpoints: tuple[int, ...] = (10_000, 100_000), clients: int = 64) -> dict:
    """The server's RSS (MiB) after each checkpoint's number of requests."""
    rss = {}
    with server(bundle) as (process, port, _log):
        done = 0
        for target in checkpoints:
            while done < target:
                result = run_http("127.0.0.1", port, requests, clients, seconds=1.0, warmup_s=0.0).summary()
                done += result["requests"]
            rss[str(target)] = {"requests": done, "rss_mib": _rss_mib(process.pid)}
    values = [v["rss_mib"] for v in rss.values()]
    return {"checkpoints": rss, "growth_mib": round(values[-1] - values[0], 2)}


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no VmRSS for process {pid}")
