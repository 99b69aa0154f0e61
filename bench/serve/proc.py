"""Processes under test, from outside: a free port, readiness, and the CPU time of a process tree
(a server and every process it started: workers, inference pools), read from Linux's /proc."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # /proc/<pid>/stat counts CPU time in these


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_ready(process: subprocess.Popen, port: int, model: str | None, timeout_s: float = 120, scheme: str = "http") -> None:
    """Until GET /v2/health/ready (or the model's ready route) answers 200; fails if the process exits."""
    url = f"{scheme}://127.0.0.1:{port}" + (f"/v2/models/{model}/ready" if model else "/v2/health/ready")
    unverified = ssl._create_unverified_context() if scheme == "https" else None  # readiness only: the load verifies
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:4]} exited with {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1, context=unverified) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"{url} was not ready within {timeout_s} s")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds of all its threads), None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # ppid, utime + stime


def thread_cpu_s(pid: int) -> float:
    """CPU seconds of `pid`'s main thread alone: in mlp-serve and the floors, the event loop's (the
    batcher and ONNX Runtime run on threads of their own)."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def tree_cpu_s(root: int) -> float:
    """CPU seconds used so far by `root` and its living descendants."""
    stats = {int(entry): _stat(int(entry)) for entry in os.listdir("/proc") if entry.isdigit()}
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        if stat is not None:
            children.setdefault(stat[0], []).append(pid)
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        if stats.get(pid) is not None:
            total += stats[pid][1]
        stack.extend(children.get(pid, []))
    return total


def listening_sockets(port: int) -> int:
    """How many sockets listen on `port` (IPv4 and IPv6): one per worker of a server started with
    --workers N, each bound with SO_REUSEPORT."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            count += int(local.rsplit(":", 1)[1], 16) == port and state == "0A"  # 0A: TCP_LISTEN
    return count


def wait_listening(port: int, count: int, timeout_s: float = 120) -> None:
    """Until `count` sockets listen on `port`: with --workers N, every worker, not only the first ready."""
    deadline = time.monotonic() + timeout_s
    while listening_sockets(port) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} sockets were not listening on {port} within {timeout_s} s")
        time.sleep(0.05)
