"""Start the peer model servers that `make bench-serve` measures beside deploy/serve/__main__.py, each from
its own venv under the peers folder (.peers/, built by bench/serve/peers/peers.mk).

Standard library only: it runs in our .venv and never imports mlserver, kserve, pytriton or torch.

    from bench.serve.peers.launch import PEERS, running_peer, versions
    for peer in PEERS:
        with running_peer(peer, Path("artifacts/model.onnx"), "mnist", 8100, 8101,
                          Path("/tmp/peers"), Path(".peers")) as proc:
            ...  # V2 requests to http://127.0.0.1:8100/v2/models/mnist/infer
        print(peer, versions(peer, Path(".peers")))

Peers: "mlserver" (MLServer's defaults), "mlserver-adaptive" (the same with adaptive batching,
max_batch_size 64 / max_batch_time 2 ms), "kserve" (KServe's Python ModelServer, defaults) and "triton"
(NVIDIA Triton Inference Server from the nvidia-pytriton wheel, the model in its Python backend through
PyTriton, dynamic batching with a 100 µs queue delay: triton_onnx.py).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PEERS = ("mlserver", "mlserver-adaptive", "kserve", "triton")
HERE = Path(__file__).resolve().parent  # holds mlserver_onnx.py, kserve_onnx.py and triton_onnx.py
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
ADAPTIVE_BATCHING = {"max_batch_size": 64, "max_batch_time": 0.002}
# The server package whose version `versions` reports, per venv.
_PACKAGE = {"mlserver": "mlserver", "kserve": "kserve", "triton": "nvidia-pytriton"}


def _venv(peer: str) -> str:
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; one of {PEERS}")
    return peer if peer in ("kserve", "triton") else "mlserver"  # mlserver-adaptive shares mlserver's venv


def venv_python(peer: str, root: Path) -> Path:
    return Path(root) / _venv(peer) / "bin" / "python"


def versions(peer: str, root: Path) -> dict[str, str]:
    """The installed versions of the peer's server package, onnxruntime, numpy and Python (and, for
    triton, of the tritonserver binary in the nvidia-pytriton wheel)."""
    packages = [_PACKAGE[_venv(peer)], "onnxruntime", "numpy"]
    code = ("import importlib.metadata as m, json, platform, sys; "
            "print(json.dumps({**{p: m.version(p) for p in sys.argv[1:]}, 'python': platform.python_version()}))")
    out = subprocess.run([str(venv_python(peer, root)), "-c", code, *packages],
                         check=True, capture_output=True, text=True).stdout
    found = json.loads(out)
    if _venv(peer) == "triton":
        found["tritonserver"] = _tritonserver_version(venv_python(peer, root))
    return found


def _ask(python: Path, code: str) -> str:
    return subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True).stdout.strip()


def _tritonserver_version(python: Path, timeout_s: float = 30.0) -> str:
    """The version the wheel's tritonserver prints in its start-up table (it has no --version option):
    started with no endpoints and an empty model repository, killed once it has printed it (well under
    a second); "unknown" if it never does."""
    # find_spec finds the package without importing it (and so without its dependencies).
    dist = Path(_ask(python, "import importlib.util as u, pathlib; "
                             "print(pathlib.Path(u.find_spec('pytriton').origin).parent / 'tritonserver')"))
    with tempfile.TemporaryDirectory() as repository:
        proc = subprocess.Popen(
            [str(dist / "bin" / "tritonserver"), f"--model-repository={repository}",
             f"--backend-directory={dist / 'backends'}", "--allow-http=false", "--allow-grpc=false",
             "--allow-metrics=false"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace", start_new_session=True)
        timer = threading.Timer(timeout_s, proc.kill)  # ends the read below if it never prints the table
        timer.start()
        try:
            for line in proc.stdout:
                match = re.search(r"\|\s*server_version\s*\|\s*(\S+)", line)
                if match:
                    return match.group(1)
            return "unknown"
        finally:
            timer.cancel()
            proc.kill()
            proc.wait()
            proc.stdout.close()


def _libpython_dir(python: Path) -> str:
    """The lib folder of the venv's base interpreter, which holds its libpython3.X.so.1.0 (peers.mk
    builds the triton venv only from a Python with one): the Python backend's stub process links it."""
    return _ask(python, "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))")


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
    if peer == "triton":
        # The metrics server (on by default, port 8002) moves to a free port, as MLServer's does.
        return [str(python), str(HERE / "triton_onnx.py"), "--model-path", str(Path(model_onnx).resolve()),
                "--model-name", model_name, "--http-port", str(http_port), "--grpc-port", str(grpc_port),
                "--metrics-port", str(_free_port()), "--workspace", str(folder / "workspace")]
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


def _stop(proc: subprocess.Popen, whole_group: bool = True) -> None:
    """SIGTERM to the whole process group (MLServer's inference-pool workers are children of the
    root process), or with whole_group=False to the root alone, which then stops its children;
    SIGKILL to whatever of the group is left after STOP_TIMEOUT_S."""
    pgid = proc.pid  # start_new_session: the root is the group's leader
    try:
        if whole_group:
            os.killpg(pgid, signal.SIGTERM)
        else:
            os.kill(pgid, signal.SIGTERM)
    except ProcessLookupError:  # the whole group (or the root) has exited already
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
    folder, so each peer gets a folder of its own; triton: PyTriton's workspace, emptied on stop) and
    its log to workdir/<peer>.log. Yields once
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
    if peer == "triton":
        # First on the path: the stub must load the libpython of the venv's own Python build, not
        # another of the same version (the system's, say) that the loader would find otherwise.
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [_libpython_dir(venv_python(peer, root)), os.environ.get("LD_LIBRARY_PATH")]))
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
        # triton: the root alone. triton_onnx.py unloads the model, waits for the Python backend's
        # stub to exit (it frees its shared memory in /dev/shm, the proxy's too), then stops
        # tritonserver; a SIGTERM to each of them at once kills the stub and its tensor store midway
        # and leaves those segments (and Triton's /tmp/folder*, /tmp/python_env_*) behind.
        _stop(proc, whole_group=peer != "triton")
