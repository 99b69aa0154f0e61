"""Hot reload under load and TLS's cost, for `make bench-serve` (bench.serve): mlp-serve --repository
taking new versions while clients hammer the model, and the same server over TLS.

    result = hot_reload(bundle, requests, clients=64, swaps=10, seconds=10, workdir=Path("artifacts/bench/serve-repository"))
    cert, key = self_signed(Path("artifacts/bench/serve-tls"))

A swap is what a user does: publish a verified bundle into the repository as the next version
(deploy.model_repository.publish, as `make deploy REPOSITORY=` does), then POST
/v2/repository/models/<m>/load; the server
verifies and warms the new version, moves traffic, and retires the old one. Every version holds
the same bundle, so every answer must carry the fp32 model's class: a failed or wrong answer is a
request the reload lost.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.serve.load import Request, run_http
from bench.serve.proc import free_port, tree_cpu_s, wait_ready
from deploy.model_repository import publish


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key (openssl), made once per folder."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    if not cert.is_file():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                        "-days", "30", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def hot_reload(bundle: Path, requests: list[Request], model: str, clients: int, swaps: int, seconds: float, warmup_s: float,
               workdir: Path) -> dict:
    """`clients` closed-loop clients for `seconds` while `swaps` new versions are published and loaded,
    evenly spread over the window; the load point plus each swap's load time."""
    shutil.rmtree(workdir, ignore_errors=True)
    publish(bundle, workdir, model)
    port = free_port()
    command = [sys.executable, "-m", "deploy.serve", "--repository", str(workdir), "--port", str(port), "--grpc-port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    loads_s: list[float] = []
    try:
        wait_ready(process, port, model)
        swapper = threading.Thread(target=_swap, args=(workdir / model, port, model, swaps, warmup_s, seconds, loads_s))
        swapper.start()
        result = run_http("127.0.0.1", port, requests, clients, seconds, warmup_s, lambda: tree_cpu_s(process.pid))
        swapper.join()
        versions = _get(port, f"/v2/models/{model}")
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)
    return {**result.summary(), "swaps": len(loads_s), "load_s": loads_s, "served_version_at_end": versions}


def _swap(model_dir: Path, port: int, model: str, swaps: int, warmup_s: float, seconds: float, loads_s: list[float]) -> None:
    time.sleep(warmup_s + seconds / (2 * swaps))  # the first swap inside the measured window
    for _ in range(swaps):
        began = time.monotonic()
        publish(model_dir / "1", model_dir.parent, model_dir.name, again=True)  # `make deploy REPOSITORY=`'s path
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        connection.request("POST", f"/v2/repository/models/{model}/load", b"")
        response = connection.getresponse()
        if response.status != 200:
            raise RuntimeError(f"load answered {response.status}: {response.read()[:300]!r}")
        response.read()
        loads_s.append(time.monotonic() - began)
        time.sleep(max(seconds / swaps - (time.monotonic() - began), 0))


def _get(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    return connection.getresponse().read().decode()
