"""`make bench-serve`: mlp-serve beside Triton Inference Server, MLServer and KServe's Python server under
the same load, in one run, then serve.md and serve.png (bench.serve.report).

Usage:
    python -m bench.serve [--artifacts DIR] [--seconds 5] [--clients 1,8,64] [--delays-us 0,500,2000]
                          [--peers mlserver,mlserver-adaptive,kserve,triton] [--peers-dir .peers] [--swaps 10]
                          [--floor-rounds 6]
    make bench-serve                  # builds the peers' virtual environments first (bench/serve/peers/peers.mk)

Every server serves the bundle's default variant file ($(ARTIFACTS)/deploy) on loopback. Each point
is C closed-loop clients (bench.serve.load) sending batch-1 requests built from real held-out inputs
(the rows the parity gate judged, <artifacts>/held_out.npz) for `seconds` after a warm-up, every
answer checked against the fp32 model's class. gRPC is loaded by two clients: grpc.aio ("grpc", what
tritonclient.grpc.aio users run) and zttp's HTTP/2 client ("grpc-h2", bench.serve.grpc_load, whose
CPU per call is near the HTTP client's). Measured: mlp-serve with dynamic batching on and off (HTTP
binary, HTTP JSON, gRPC), gRPC on its other transport (grpcio's server; the default is uvicorn's
HTTP/2), over TLS, its queue delay at 64 clients, two workers, the protocol stacks' floor
(bench.serve.stack_floor), each peer in the encodings it accepts (Triton's gRPC too), hot reload (64
clients while --swaps versions are loaded: bench.serve.hot_reload), the model's own time per row, and
the CPU of the server's process tree and of the load generator. Two targets are judged from servers
side by side in alternating rounds (bench.serve.paired): the floor target from mlp-serve, that floor
and mlp-serve's own HTTP path answering a constant (the ceiling any model behind it stays under), the
TLS target from mlp-serve over TLS and in plain HTTP.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import platform
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bench.serve import report as serve_report
from bench.serve import robustness as serve_robustness
from bench.serve.grpc_load import run_grpc_h2
from bench.serve.hot_reload import hot_reload, self_signed
from bench.serve.load import grpc_requests, infer_requests, run_grpc, run_http
from bench.serve.paired import alternating_rounds
from bench.serve.peers.launch import running_peer, versions
from bench.serve.proc import free_port, tree_cpu_s, wait_listening, wait_ready
from deploy.bundle import load_bundle
from deploy.serve.__main__ import SERVING_ORT_OPTIONS
from handoff.artifacts import BUNDLE, ONNX, SERVE_RESULTS
from handoff.atomic import write_json
from handoff.cli import run_cli
from handoff.cpu import cpu_flags, cpu_model
from handoff.held_out import read_held_out

MODEL_NAME = "mnist_mlp"
GRPC_OTHER_TRANSPORT = "gRPC on grpcio"  # the transport trial's other side (mlp-serve --grpc-transport grpcio)
PEER_SETTINGS = {"mlserver-adaptive": "adaptive batching 64 / 2 ms", "triton": "Python backend, dynamic batching 100 µs"}


@dataclass(frozen=True)
class ServeBenchConfig:
    artifacts: str = field(default="artifacts", metadata={"help": "folder holding deploy/ (the bundle); results go to ARTIFACTS/bench"})
    seconds: float = field(default=5.0, metadata={"help": "measured window per point, s"})
    warmup_s: float = field(default=1.0, metadata={"help": "load before each window, s"})
    clients: str = field(default="1,8,64", metadata={"help": "concurrent clients per point"})
    delays_us: str = field(default="0,500,2000", metadata={"help": "--max-queue-delay-us values tried at 64 clients"})
    peers: str = field(default="mlserver,mlserver-adaptive,kserve,triton", metadata={"help": "peers to measure ('' for none)"})
    peers_dir: str = field(default=".peers", metadata={"help": "where bench/serve/peers/peers.mk made their venvs"})
    rows: int = field(default=256, metadata={"help": "distinct held-out inputs the clients cycle through"})
    robustness_s: float = field(default=30.0, metadata={"help": "length of the 256-client overload, s"})
    swaps: int = field(default=10, metadata={"help": "new versions loaded while 64 clients send requests (hot reload)"})
    floor_rounds: int = field(default=6, metadata={"help": "alternating rounds at 64 clients (HTTP binary), seconds/2 each, of mlp-serve, "
                                                           "the floor and mlp-serve's HTTP path with a constant model (the floor target), "
                                                           "and of mlp-serve over TLS and plain (the TLS target)"})

    @property
    def client_counts(self) -> list[int]:
        return [int(c) for c in self.clients.split(",")]


@dataclass
class Target:
    """A running server under test: its process tree's root, ports, and what it is."""

    server: str  # e.g. "mlp-serve", "mlserver-adaptive"
    setting: str  # e.g. "batching on"
    pid: int
    http_port: int
    grpc_port: int | None
    model: str


@contextmanager
def ours(bundle: Path, setting: str, *flags: str, workers: int = 1, tls: bool = False) -> Iterator[Target]:
    http, grpc = free_port(), free_port()
    command = [sys.executable, "-m", "deploy.serve", "--bundle", str(bundle), "--port", str(http), "--grpc-port", str(grpc),
               "--workers", str(workers), *flags]
    with _process(command) as process:
        wait_ready(process, http, MODEL_NAME, scheme="https" if tls else "http")
        wait_listening(http, workers)  # or the clients' connections miss the workers not yet listening
        yield Target("mlp-serve", setting, process.pid, http, grpc, MODEL_NAME)


@contextmanager
def floor() -> Iterator[Target]:
    http, grpc = free_port(), free_port()
    with _process([sys.executable, "-m", "bench.serve.stack_floor", "--port", str(http), "--grpc-port", str(grpc)]) as process:
        wait_ready(process, http, None)
        yield Target("floor", "constant answer", process.pid, http, grpc, MODEL_NAME)


@contextmanager
def app_floor(bundle: Path) -> Iterator[Target]:
    """mlp-serve's own HTTP path with a constant model (bench.serve.stack_floor --app)."""
    http = free_port()
    with _process([sys.executable, "-m", "bench.serve.stack_floor", "--port", str(http), "--app", str(bundle)]) as process:
        wait_ready(process, http, MODEL_NAME)
        yield Target("mlp-serve's HTTP path", "constant model", process.pid, http, None, MODEL_NAME)


@contextmanager
def _process(command: list[str]) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


def measure(target: Target, encodings: list[str], config: ServeBenchConfig, data: dict, clients: list[int] | None = None,
            tls: ssl.SSLContext | None = None) -> list[dict]:
    """One point per encoding and client count; an encoding the server refuses is one point saying so
    (`tls`: HTTP over TLS, trusting the server's certificate)."""
    points = []
    for encoding in encodings:
        refusal = _refusal(target, data[encoding]) if encoding in ("binary", "json") and tls is None else None
        for count in clients or config.client_counts:
            point = {"server": target.server, "setting": target.setting, "encoding": encoding, "clients": count}
            if refusal:
                points.append({**point, "refused": refusal})
                continue
            probe = functools.partial(tree_cpu_s, target.pid)
            if encoding == "grpc":
                result = run_grpc(f"127.0.0.1:{target.grpc_port}", data["grpc"], count, config.seconds, config.warmup_s, probe)
            elif encoding == "grpc-h2":  # the same calls, from the cheaper client
                result = run_grpc_h2("127.0.0.1", target.grpc_port, data["grpc"], count, config.seconds, config.warmup_s, probe)
            else:
                result = run_http("127.0.0.1", target.http_port, data[encoding], count, config.seconds, config.warmup_s, probe, tls)
            points.append({**point, **result.summary()})
            print(serve_report.point_line(points[-1]), flush=True)
    return points


def _refusal(target: Target, requests: list) -> str | None:
    """None if the server answers the encoding's first request with 200, else its status and message."""
    head, _, body = requests[0].wire.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if not line.startswith(("Host", "Content-Length")))
    connection = http.client.HTTPConnection("127.0.0.1", target.http_port, timeout=30)
    connection.request("POST", f"/v2/models/{target.model}/infer", body, headers)
    response = connection.getresponse()
    answer = " ".join(response.read()[:300].decode(errors="replace").split())  # one line
    return None if response.status == 200 else f"{response.status}: {answer[:160]}"


def load_data(config: ServeBenchConfig, bundle: Path) -> tuple[dict, np.ndarray]:
    """The requests per encoding, built from the first `rows` held-out inputs, and those inputs."""
    contract = load_bundle(bundle).contract
    inputs = np.ascontiguousarray(read_held_out(Path(config.artifacts)).inputs[:config.rows], dtype=np.float32)
    reference = ort.InferenceSession(str(bundle / ONNX), providers=["CPUExecutionProvider"])
    expected = reference.run(None, {contract.input_name: inputs})[0].argmax(1)  # the fp32 model's classes: the oracle
    path = f"/v2/models/{MODEL_NAME}/infer"
    data = {encoding: infer_requests("127.0.0.1", path, inputs, expected, encoding) for encoding in ("binary", "json")}
    data["grpc"] = grpc_requests(MODEL_NAME, inputs, expected)
    return data, inputs


def model_time(bundle: Path, inputs: np.ndarray, rounds: int = 200) -> dict:
    """The served session's own time per call at batch 1 and 64 (fastest of `rounds`), µs."""
    served = load_bundle(bundle, None, SERVING_ORT_OPTIONS)
    times = {}
    for batch in (1, 64):
        rows = np.ascontiguousarray(np.resize(inputs, (batch, *inputs.shape[1:])))
        best = float("inf")
        for _ in range(rounds):
            started = time.perf_counter()
            served.run(rows)
            best = min(best, time.perf_counter() - started)
        times[f"batch_{batch}_us"] = 1e6 * best
        times[f"batch_{batch}_us_per_row"] = 1e6 * best / batch
    return times


def machine() -> dict:
    flags = cpu_flags()
    return {"cpu": cpu_model(), "flags": flags["present"], "absent": flags["absent"], "cores": os.cpu_count(),
            "python": platform.python_version()}


def run(config: ServeBenchConfig) -> None:
    bundle = Path(config.artifacts) / BUNDLE
    data, inputs = load_data(config, bundle)
    points: list[dict] = []
    with ours(bundle, "batching on") as target:
        points += measure(target, ["binary", "json", "grpc", "grpc-h2"], config, data)
    with ours(bundle, GRPC_OTHER_TRANSPORT, "--grpc-transport", "grpcio") as target:
        points += measure(target, ["grpc", "grpc-h2"], config, data)
    cert, key = self_signed(Path(config.artifacts) / "bench" / "serve-tls")
    trusting = ssl.create_default_context(cafile=cert)
    with ours(bundle, "TLS", "--tls-cert", str(cert), "--tls-key", str(key), tls=True) as target:
        points += measure(target, ["binary"], config, data, [1, 64], tls=trusting)
        with ours(bundle, "batching on") as plain:  # the TLS target's two sides, side by side
            tls_rounds = alternating_rounds({"tls": target, "plain": plain}, data["binary"], 64, config.floor_rounds,
                                            config.seconds / 2, config.warmup_s, {"tls": trusting})
    with ours(bundle, "batching off", "--no-dynamic-batching") as target:
        points += measure(target, ["binary", "json", "grpc"], config, data)
    for delay in config.delays_us.split(","):
        with ours(bundle, f"delay {delay} µs", "--max-queue-delay-us", delay) as target:
            points += measure(target, ["binary"], config, data, [1, 64])
    with ours(bundle, "2 workers", workers=2) as target:
        points += measure(target, ["binary"], config, data, [64])
    with floor() as target:
        points += measure(target, ["binary", "grpc", "grpc-h2"], config, data, [1, 64])
    with ours(bundle, "batching on") as mine, app_floor(bundle) as app, floor() as stack:  # the floor target's sides, side by side
        floor_rounds = alternating_rounds({"ours": mine, "app": app, "floor": stack}, data["binary"], 64, config.floor_rounds,
                                          config.seconds / 2, config.warmup_s)
    peer_versions, peer_stats = {}, {}
    for peer in filter(None, config.peers.split(",")):
        peer_versions[peer] = versions(peer, Path(config.peers_dir))
        http, grpc = free_port(), free_port()
        work = Path(config.artifacts) / "bench" / "serve-peers"
        with running_peer(peer, bundle / ONNX, MODEL_NAME, http, grpc, work, Path(config.peers_dir)) as process:
            # Triton's gRPC is its own C++ front-end: measured; the Python peers' gRPC is not (their HTTP is their fast path)
            target = Target(peer, PEER_SETTINGS.get(peer, "defaults"), process.pid, http, grpc if peer == "triton" else None, MODEL_NAME)
            points += measure(target, ["binary", "json", "grpc", "grpc-h2"] if peer == "triton" else ["binary", "json"], config, data)
        if peer == "triton":  # its statistics API is behind PyTriton's token: the peer saved them as it stopped
            peer_stats[peer] = json.loads((work / peer / "statistics.json").read_text())
    swaps = hot_reload(bundle, data["binary"], MODEL_NAME, 64, config.swaps, max(config.seconds, config.swaps * 1.0), config.warmup_s,
                       Path(config.artifacts) / "bench" / "serve-repository")
    print(f"hot reload: {swaps['swaps']} swaps, {swaps['ok']} answered 200 of {swaps['requests']}, {swaps['wrong']} wrong, "
          f"p99 {swaps['p99_ms']:.1f} ms, loads {[round(s, 2) for s in swaps['load_s']]} s", flush=True)
    out = Path(config.artifacts) / SERVE_RESULTS
    write_json(out, {"config": asdict(config), "machine": machine(), "model_time": model_time(bundle, inputs),
                     "versions": {"ours": _our_versions(), **peer_versions}, "points": points, "floor_rounds": floor_rounds,
                     "tls_rounds": tls_rounds, "hot_reload": swaps,
                     "peer_statistics": peer_stats, "robustness": robustness(bundle, data["binary"], config)})
    serve_report.write(out)


def robustness(bundle: Path, requests: list, config: ServeBenchConfig) -> dict:
    """bench.serve.robustness at full size (`robustness_s` sets the overload's length)."""
    results = {
        "overload": serve_robustness.overload(bundle, requests, 256, config.robustness_s, queue_size=1024),
        "overload_small_queue": serve_robustness.overload(bundle, requests, 256, config.robustness_s / 3, queue_size=64),
        "stalled": serve_robustness.stalled(bundle, requests, stalled_clients=100, seconds=config.seconds),
        "drain": serve_robustness.drain(bundle, requests, in_flight=32),
        "memory": serve_robustness.memory(bundle, requests, (10_000, 100_000)),
    }
    print(json.dumps(results, indent=1), flush=True)
    return results


def _our_versions() -> dict:
    import grpc
    import uvicorn

    return {"onnxruntime": ort.__version__, "numpy": np.__version__, "uvicorn": uvicorn.__version__,
            "grpcio": grpc.__version__, "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    return run_cli(ServeBenchConfig, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
