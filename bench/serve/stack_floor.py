"""The floor under any Python server of the Open Inference Protocol on this machine: the same HTTP and
gRPC stacks mlp-serve uses (uvicorn with uvloop and httptools through mlp-serve's protocol class,
deploy.serve.connections, under a bare ASGI app, and gRPC on uvicorn's HTTP/2 through
deploy.serve.grpc_h2, on one event loop), answering every infer request with one constant response,
no parsing, no model. With --app BUNDLE, the floor under mlp-serve itself:
mlp-serve as it runs (its ASGI app, routes, parsing, checks, metrics and uvicorn's settings), with
each model version's batcher and model replaced by one constant answer given at once in the event loop.

    python -m bench.serve.stack_floor --port 8000 --grpc-port 8001     # until SIGTERM
    python -m bench.serve.stack_floor --port 8000 --app artifacts/deploy

`make bench-serve` loads both like the real servers: mlp-serve's distance to the first is what its
parsing, checks, batching and model cost; the first's own CPU per request is the protocol stacks'.
The second is a ceiling: no model, batcher or thread behind mlp-serve's HTTP path can make it answer
faster than that path alone. Their answers carry no real class (the load generator's "wrong" count
means nothing here).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import numpy as np
import orjson
import uvicorn
import uvloop
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from deploy.bundle import load_bundle
from deploy.serve.__main__ import MAX_CONNECTIONS, SERVING_ORT_OPTIONS, Server, limits_from, parse_args
from deploy.serve.__main__ import serve as serve_mlp
from deploy.serve.connections import bounded_protocol
from deploy.serve.grpc_h2 import GrpcH2App, GrpcH2Protocol
from deploy.serve.service import ModelService

PROBS = bytes(40)  # 10 float32 zeros
HEADER = orjson.dumps({"model_name": "m", "model_version": "1",
                       "outputs": [{"name": "probs", "datatype": "FP32", "shape": [1, 10], "parameters": {"binary_data_size": 40}}]})
HTTP_HEADERS = [(b"content-type", b"application/octet-stream"), (b"inference-header-content-length", str(len(HEADER)).encode()),
                (b"content-length", str(len(HEADER) + len(PROBS)).encode())]
GRPC_ANSWER = pb.ModelInferResponse(model_name="m", model_version="1", raw_output_contents=[PROBS],
                                    outputs=[pb.ModelInferResponse.InferOutputTensor(name="probs", datatype="FP32", shape=[1, 10])])


async def app(scope: dict, receive, send) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the whole body, as any server must
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HTTP_HEADERS})
    await send({"type": "http.response.body", "body": HEADER + PROBS})


class ConstantService(service_pb2_grpc.GRPCInferenceServiceServicer):
    async def ModelInfer(self, request: pb.ModelInferRequest, context) -> pb.ModelInferResponse:
        return GRPC_ANSWER


async def serve(port: int, grpc_port: int) -> None:
    """Both stacks on one event loop, configured as mlp-serve configures them, until SIGTERM."""
    grpc_config = uvicorn.Config(GrpcH2App(ConstantService()), host="127.0.0.1", port=grpc_port, http=GrpcH2Protocol, loop="none",
                                 lifespan="off", access_log=False, log_level="warning", timeout_keep_alive=300,
                                 proxy_headers=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="none", http=bounded_protocol(MAX_CONNECTIONS), lifespan="off",
                            access_log=False, log_level="warning", proxy_headers=False)
    await asyncio.gather(uvicorn.Server(grpc_config).serve(), uvicorn.Server(config).serve())


class ConstantAnswers(ModelService):
    """A model version whose every request is answered at once with the same probabilities (uniform),
    in the event loop: no batcher thread, no model; what is left is mlp-serve's HTTP path."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._one_row = self._answer(1)  # the benches' batch-1 requests cost no numpy call

    def infer(self, inputs: np.ndarray) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        future.set_result(self._one_row if len(inputs) == 1 else self._answer(len(inputs)))
        return future

    def _answer(self, rows: int) -> np.ndarray:
        classes = len(self.contract.classes)
        return np.full((rows, classes), 1 / classes, np.float32)

    @property
    def running(self) -> bool:
        return True

    def start(self) -> None:  # nothing to start, drain or stop
        pass

    def drain(self) -> None:
        pass

    def stop(self) -> None:
        self.metrics.forget()


def serve_app(bundle: Path, port: int) -> None:
    """mlp-serve on `bundle` (HTTP only), its one version answering a constant, until SIGTERM."""
    server = Server(parse_args(["--bundle", str(bundle), "--port", str(port), "--grpc-port", "0"]), "stack-floor")
    service = ConstantAnswers(load_bundle(bundle, None, SERVING_ORT_OPTIONS), limits_from(server.args, bundle), server.metrics)
    server.models.swap(service.name, {service.version: service})
    uvloop.run(serve_mlp(server))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, default=None, help="the bare stacks' gRPC port (required without --app)")
    parser.add_argument("--app", type=Path, default=None, help="a bundle: serve it with mlp-serve's own app and a constant model")
    args = parser.parse_args()
    if args.app is not None:
        serve_app(args.app, args.port)
    elif args.grpc_port is None:
        parser.error("--grpc-port is required without --app")
    else:
        uvloop.run(serve(args.port, args.grpc_port))


if __name__ == "__main__":
    main()
