"""Our ONNX model in NVIDIA Triton Inference Server through PyTriton: what a user would write to serve
model.onnx with `pytriton.triton.Triton`, benchmarked beside deploy/serve/__main__.py by `make bench-serve`.

It runs in the Triton venv (.peers/triton, see peers.mk), never in .venv; launch.py starts it, with the
venv's base interpreter's lib folder on LD_LIBRARY_PATH (the Python backend's stub needs its libpython):

    LD_LIBRARY_PATH=~/.pyenv/versions/3.12.1/lib .peers/triton/bin/python bench/serve/peers/triton_onnx.py \
        --model-path artifacts/model.onnx --model-name mnist --http-port 8080 --grpc-port 8081 \
        --metrics-port 8082 --workspace /tmp/triton-workspace

The nvidia-pytriton wheel ships Triton's own tritonserver binary, which serves HTTP/REST and gRPC (the
Open Inference Protocol, binary tensor data and JSON) and batches dynamically. The wheel has no ONNX Runtime
backend, only the Python backend, so a request goes tritonserver -> Python backend stub process (shared
memory) -> this process (PyTriton's proxy, ZeroMQ over the workspace's sockets and shared memory), where
`infer` runs the ONNX Runtime session on the batch the dynamic batcher formed, and back the same way.
Triton and PyTriton keep their defaults otherwise (one model instance, 0.0.0.0, no verbose logging, no
per-request log lines); only the exit timeout is shorter (EXIT_TIMEOUT_S), which matters only when stopping.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.http
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import MONITORING_PERIOD_S, TRITON_ACCESS_HEADER, Triton, TritonConfig

# Triton's dynamic batcher: requests wait up to this long in its queue to join a batch, as large as
# MAX_BATCH_SIZE (Triton's and PyTriton's only bound is >= 1).
MAX_QUEUE_DELAY_US = 100
MAX_BATCH_SIZE = 8192
# How long a stopping tritonserver waits for in-flight requests and open connections (30 s by
# default, longer than launch.py waits before it kills the lot, STOP_TIMEOUT_S).
EXIT_TIMEOUT_S = 5
STATISTICS_FILE = "statistics.json"  # Triton's statistics at the stop, in the peer's folder (the bench reads it)
# ONNX Runtime's element types as numpy's, for the tensors' declarations.
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
           "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8,
           "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def _tensor(arg: ort.NodeArg) -> Tensor:
    # The batch axis (the first, dynamic) is Triton's, outside the declared shape; any other
    # dynamic axis is -1.
    shape = tuple(d if isinstance(d, int) else -1 for d in arg.shape[1:])
    return Tensor(name=arg.name, dtype=_DTYPES[arg.type], shape=shape)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--metrics-port", type=int, required=True)
    parser.add_argument("--workspace", required=True,
                        help="PyTriton's workspace (model store, sockets, a copy of tritonserver); "
                             "replaced if it exists (PyTriton refuses an existing one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s: %(message)s")

    # Default session options, CPU only: the configuration a user gets without tuning.
    session = ort.InferenceSession(args.model_path, providers=["CPUExecutionProvider"])
    (model_input,), (model_output,) = session.get_inputs(), session.get_outputs()

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        (probs,) = session.run([model_output.name], {model_input.name: inputs[model_input.name]})
        return {model_output.name: probs}

    # SIGTERM (launch.py's stop) or SIGINT: stop as below, not die with the children left running;
    # while still starting (bind waits for the model to load), KeyboardInterrupt out of the with block.
    serving, stopping = threading.Event(), threading.Event()

    def on_signal(*_) -> None:
        if not serving.is_set():
            raise KeyboardInterrupt
        stopping.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    workspace = Path(args.workspace)
    shutil.rmtree(workspace, ignore_errors=True)  # left over by a killed run
    config = TritonConfig(http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
                          exit_timeout_secs=EXIT_TIMEOUT_S)
    with Triton(config=config, workspace=workspace) as triton:  # starts tritonserver
        triton.bind(
            model_name=args.model_name,
            infer_func=infer,
            inputs=[_tensor(model_input)],
            outputs=[_tensor(model_output)],
            config=ModelConfig(max_batch_size=MAX_BATCH_SIZE,
                               batcher=DynamicBatcher(max_queue_delay_microseconds=MAX_QUEUE_DELAY_US)),
        )
        triton.run()
        serving.set()
        # Triton.serve()'s loop, with a stop that unloads the model first: a tritonserver told to stop
        # while a client still holds an idle connection gives up after EXIT_TIMEOUT_S and exits without
        # unloading it, and the Python backend then never frees its shared memory (/dev/shm) nor
        # removes its /tmp/folderXXXXXX (Triton's copy of the model) and /tmp/python_env_XXXXXX.
        while not stopping.wait(MONITORING_PERIOD_S) and triton.is_alive():
            pass
        if stopping.is_set():
            _save_statistics(args.http_port, args.model_name, triton.get_access_token(), Path.cwd() / STATISTICS_FILE)
            logging.info("stopping: unloading %s first", args.model_name)
            _unload(args.http_port, args.model_name, triton.get_access_token())
    # Leaving the block stops tritonserver (SIGINT, then waits for it) and empties the workspace.


def _save_statistics(http_port: int, model_name: str, token: str, out: Path) -> None:
    """Triton's statistics of the run (where its time went per batch size), for the bench's report:
    PyTriton puts that API behind its access token too, which only this process knows."""
    client = tritonclient.http.InferenceServerClient(f"127.0.0.1:{http_port}", network_timeout=10)
    try:
        out.write_text(json.dumps(client.get_inference_statistics(model_name, headers={TRITON_ACCESS_HEADER: token})))
    finally:
        client.close()


def _unload(http_port: int, model_name: str, token: str, timeout_s: float = 10.0) -> None:
    """Unload the model and wait until its stub process has exited (Triton's unload only starts it)."""
    # The model-repository API is behind PyTriton's access token (inference and health are not).
    client = tritonclient.http.InferenceServerClient(f"127.0.0.1:{http_port}", network_timeout=timeout_s)
    try:
        client.unload_model(model_name, headers={TRITON_ACCESS_HEADER: token})
    except Exception as error:  # noqa: BLE001 -- stopping anyway; tritonserver may be gone already
        logging.warning("could not unload %s before stopping: %s", model_name, error)
        return
    finally:
        client.close()
    deadline = time.monotonic() + timeout_s
    while _stubs() and time.monotonic() < deadline:
        time.sleep(0.1)
    logging.info("unloaded %s%s", model_name, "" if not _stubs() else f"; its stub still runs after {timeout_s:.0f} s")


def _stubs() -> list[int]:
    """The Python backend's stub processes in this process group (launch.py starts each peer in a
    session of its own; tritonserver and its stubs stay in it)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):  # not a process, or one that has just exited
            continue
        # pid (comm) state ppid pgrp ...: comm, at most 15 characters, may hold spaces or brackets.
        comm, fields = stat[stat.index("(") + 1:stat.rindex(")")], stat[stat.rindex(")") + 2:].split()
        if comm.startswith("triton_python_b") and fields[0] != "Z" and int(fields[2]) == os.getpgrp():
            found.append(int(entry.name))
    return found


if __name__ == "__main__":
    main()
