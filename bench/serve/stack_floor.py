"""The floor under any Python server of the Open Inference Protocol on this machine: the same HTTP and
gRPC stacks mlp-serve uses (uvicorn with uvloop and httptools under a bare ASGI app, and gRPC on
uvicorn's HTTP/2 through deploy.serve.grpc_h2, on one event loop), answering every infer request with
one constant response, no parsing, no model.

    python -m bench.serve.stack_floor --port 8000 --grpc-port 8001     # until SIGTERM

`make bench-serve` loads it like the real servers: mlp-serve's distance to this floor is what its
parsing, checks, batching and model cost; the floor's own CPU per request is the protocol stacks'.
Its answers carry no real class (the load generator's "wrong" count means nothing here).
"""

from __future__ import annotations

import argparse
import asyncio

import orjson
import uvicorn
import uvloop
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from deploy.serve.grpc_h2 import GrpcH2App, GrpcH2Protocol

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
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="none", http="httptools", lifespan="off",
                            access_log=False, log_level="warning", proxy_headers=False)
    await asyncio.gather(uvicorn.Server(grpc_config).serve(), uvicorn.Server(config).serve())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.grpc_port))


if __name__ == "__main__":
    main()
