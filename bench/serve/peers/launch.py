"""Start the peer model servers that `make bench-serve` measures beside deploy/serve/__main__.py, each from
its own venv under the peers folder (.peers/, built by bench/serve/peers/peers.mk).

Standard library only: it runs in our .venv and never imports mlserver, kserve or torch.

    from bench.serve.peers.launch import PEERS, running_peer, versions
    for peer in PEERS:
        with running_peer(peer, Path("artifacts/model.onnx"), "mnist", 8100, 8101,
                          Path("/tmp/peers"), Path(".peers")) as proc:
            ...  # V2 requests to http://127.0.0.1:8100/v2/models/mnist/infer
        print(peer, versions(peer, Path(".peers")))

Peers: "mlserver" (MLServer's defaults), "mlserver-adaptive" (the same with adaptive batching,
max_batch_size 64 / max_batch_time 2 ms) and "kserve" (KServe's Python ModelServer, defaults).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PEERS = ("mlserver", "mlserver-adaptive", "kserve")
HERE = Path(__file__).resolve().parent  # holds mlserver_onnx.py and kserve_onnx.py
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
ADAPTIVE_BATCHING = {"max_batch_size": 64, "max_batch_time": 0.002}
# The server package whose version `versions` reports, per venv.
_PACKAGE = {"mlserver": "mlserver", "kserve": "kserve"}


def _venv(peer: str) -> str:
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; one of {PEERS}")
    return "kserve" if peer == "kserve" else "mlserver"  # mlserver-adaptive shares mlserver's venv


def venv_python(peer: str, root: Path) -> Path:
    return Path(root) / _venv(peer) / "bin" / "python"


def versions(peer: str, root: Path) -> dict[str, str]:
    """The installed versions of the peer's server package, onnxruntime, numpy and Python."""
    packages = [_PACKAGE[_venv(peer)], "onnxruntime", "numpy"]
    code = ("import importlib.metadata as m, json, platform, sys; "
            "print(json.dumps({**{p: m.version(p) for p in sys.argv[1:]}, 'python': platform.python_version()}))")
    out = subprocess.run([str(venv_python(peer, root)), "-c", code, *packages],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mlserver_config(peer: str, model_onnx: Path, model_name: str, http_port: int, grpc_port: int,
                     folder: Path) -> None:
    # MLServer's defaults otherwise; its metrics server (on by default, port 8082) moves to a free
    # port so that two servers, or a leftover one, never clash on it.
    settings = {"http_port": http_port, "grpc_port": grpc_port, "metrics_port": _free_port()}
    model = {"name": model_name, "implementation": "mlserver_onnx.OnnxModel",
             "parameters": {"uri": str(Path(model_onnx).resolve())}}
    if peer == "mlserver-adaptive":
        model.update(ADAPTIVE_BATCHING)
    (folder / model_name).mkdir(parents=True, exist_ok=True)
    (folder / "settings.json").write_text(json.dumps(settings, indent=2) + "\n")
    (folder / model_name / "model-settings.json").write_text(json.dumps(model, indent=2) + "\n")


def _command(peer: str, model_onnx: Path, model_name: str, http_port: int, grpc_port: int,
             folder: Path, root: Path) -> list[str]:
    python = venv_python(peer, root)
    if peer == "kserve":
        return [str(python), str(HERE / "kserve_onnx.py"), "--model-path", str(Path(model_onnx).resolve()),
                "--model-name", model_name, "--http-port", str(http_port), "--grpc-port", str(grpc_port)]
    _mlserver_config(peer, model_onnx, model_name, http_port, grpc_port, folder)
    return [str(python.parent / "mlserver"), "start", str(folder)]


def _ready(url: str) -> bool:
    # No proxy: an http_proxy in the environment must not intercept requests to 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM to the whole process group (MLServer's inference-pool workers are children of the
    root process), SIGKILL to whatever of it is left after STOP_TIMEOUT_S."""
    pgid = proc.pid  # start_new_session: the root is the group's leader
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:  # the whole group has exited already
        pass
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None and not _group_alive(pgid):
            return
        time.sleep(0.1)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _log_tail(log: Path, chars: int = 2000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


@contextmanager
def running_peer(peer: str, model_onnx: Path, model_name: str, http_port: int, grpc_port: int,
                 workdir: Path, root: Path) -> Iterator[subprocess.Popen]:
    """Run `peer` serving `model_onnx` as `model_name` on the given ports until the block ends.

    Its configuration goes to workdir/<peer>/ (MLServer loads every model-settings.json below its
    folder, so each peer gets a folder of its own) and its log to workdir/<peer>.log. Yields once
    GET /v2/models/<model_name>/ready answers 200; RuntimeError if the server exits before that or
    is not ready within READY_TIMEOUT_S.
    """
    # Absolute paths: the server runs in its own folder. (Never resolve the venv's python itself:
    # it is a symlink to the base interpreter, which would lose the venv.)
    workdir, root = Path(workdir).resolve(), Path(root).resolve()
    if not venv_python(peer, root).exists():
        raise RuntimeError(f"no {venv_python(peer, root)}: build the venv with `make PEERS_DIR={root} "
                           f"{root / _venv(peer) / '.installed'}` (bench/serve/peers/peers.mk)")
    folder = workdir / peer
    folder.mkdir(parents=True, exist_ok=True)
    command = _command(peer, model_onnx, model_name, http_port, grpc_port, folder, root)
    # PYTHONPATH: MLServer imports the model class by name (mlserver_onnx.OnnxModel), in its
    # inference-pool workers too, which inherit the environment. Only HERE, not our own PYTHONPATH:
    # nothing of .venv may leak into the peer's venv.
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    log = workdir / f"{peer}.log"
    url = f"http://127.0.0.1:{http_port}/v2/models/{model_name}/ready"
    with open(log, "wb") as out:
        # Own session, so one signal to the group reaches every process the server starts; cwd is
        # the peer's folder because MLServer writes .metrics/ and .envs/ under its working directory.
        proc = subprocess.Popen(command, cwd=folder, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _ready(url):
            if proc.poll() is not None:
                raise RuntimeError(f"{peer} exited with {proc.returncode} before it was ready; "
                                   f"{log}:\n{_log_tail(log)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{peer} not ready at {url} after {READY_TIMEOUT_S:.0f} s; "
                                   f"{log}:\n{_log_tail(log)}")
            time.sleep(0.25)
        yield proc
    finally:
        _stop(proc)
