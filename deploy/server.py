"""mlp-serve: a bundle behind the Open Inference Protocol (KServe V2, Triton's HTTP/REST), torch-free.

Usage:
    mlp-serve [--bundle DIR] [--variant NAME] [--host H] [--port P] [--max-batch N] [--max-request-bytes B]
    make serve HOST=127.0.0.1 PORT=8000          # serves $(ARTIFACTS)/deploy until Ctrl-C

Endpoints (each model route also under /v2/models/{m}/versions/{v}):
    GET  /v2/health/live, /v2/health/ready, /v2        server liveness, readiness, metadata
    GET  /v2/models/{m}, /v2/models/{m}/ready          model metadata (names, FP32, shapes), readiness
    POST /v2/models/{m}/infer                          JSON `data` or binary tensor data (deploy.protocol)
    GET  /metrics                                      Prometheus: requests, failures, latency
Errors are `{"error": "..."}`: 400 bad request, 404 unknown model or version, 413 too large.
The bundle's default variant is served unless --variant names another it holds; a request runs
in the ONNX Runtime session whose options `make tune` chose for the nearest batch size (one session
per distinct options record), in worker threads off the event loop. The variant and its options
are logged at startup; the protocol has no field for them, so the responses do not carry them.
Why not MLServer or KServe's Python server: with the official tritonclient, the first rejected
its default binary requests and the second its JSON requests sent without Content-Type.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from deploy.bundle import Bundle, load_bundle
from deploy.contract import DeployError
from deploy.protocol import HEADER_LENGTH, ProtocolError, encode_response, parse_infer
from pipeline.handoff.manifest import read_manifest

SERVER_NAME = "mlp-serve"
SERVER_VERSION = importlib.metadata.version("mnist-pipeline")  # the console script exists only when installed
DEFAULT_MAX_BATCH = 8192
DEFAULT_MAX_REQUEST_BYTES = 64 << 20  # 64 MiB: a max batch of MNIST in binary is 25.7 MB, in JSON about 2x that
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)  # seconds
log = logging.getLogger(SERVER_NAME)


class Metrics:
    """Prometheus series for one app, in its own registry (two apps in one process stay apart)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("mlp_http_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=self.registry)
        self.failures = Counter("mlp_inference_failures", "infer requests answered with an error, by status", ["model", "status"], registry=self.registry)
        self.rows = Counter("mlp_inference_rows", "input rows inferred", ["model"], registry=self.registry)
        self.latency = Histogram("mlp_request_duration_seconds", "time from request to response, by route",
                                 ["method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)


def create_app(bundle: Bundle, max_batch: int = DEFAULT_MAX_BATCH, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> FastAPI:
    app = FastAPI(title=SERVER_NAME, docs_url=None, redoc_url=None, openapi_url=None)
    contract, metrics = bundle.contract, Metrics()

    def model_of(model: str, version: str | None = None) -> None:
        if model != contract.model_name:
            raise ProtocolError(404, f"unknown model {model!r}; this server has {contract.model_name!r}")
        if version is not None and version != contract.version:
            raise ProtocolError(404, f"unknown version {version!r} of {model!r}; it has version {contract.version!r}")

    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, err: ProtocolError) -> JSONResponse:
        if request.url.path.endswith("/infer"):
            metrics.failures.labels(contract.model_name, str(err.status)).inc()
        return JSONResponse({"error": str(err)}, status_code=err.status)

    @app.exception_handler(HTTPException)  # unknown routes (404) and methods (405), in the protocol's shape
    async def http_error(request: Request, err: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code, headers=err.headers)

    @app.middleware("http")
    async def count(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = getattr(request.scope.get("route"), "path", "unmatched")  # the template, not the raw path
        metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        metrics.latency.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    @app.get("/v2/health/live")
    async def live() -> dict:
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready() -> dict:
        return {"ready": True}  # the model is loaded and verified before the app exists

    @app.get("/v2")
    async def server_metadata() -> dict:
        return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/models/{model}")
    @app.get("/v2/models/{model}/versions/{version}")
    async def model_metadata(model: str, version: str | None = None) -> dict:
        model_of(model, version)
        return {
            "name": contract.model_name,
            "versions": [contract.version],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": contract.input_name, "datatype": "FP32", "shape": [-1, *contract.input_shape]}],
            "outputs": [{"name": contract.output_name, "datatype": "FP32", "shape": [-1, len(contract.classes)]}],
        }

    @app.get("/v2/models/{model}/ready")
    @app.get("/v2/models/{model}/versions/{version}/ready")
    async def model_ready(model: str, version: str | None = None) -> dict:
        model_of(model, version)
        return {"name": contract.model_name, "ready": True}

    @app.post("/v2/models/{model}/infer")
    @app.post("/v2/models/{model}/versions/{version}/infer")
    async def infer(model: str, request: Request, version: str | None = None) -> Response:
        model_of(model, version)
        body = await read_body(request, max_request_bytes)
        # Decoding, the model and encoding are CPU work: worker threads keep the event loop free.
        content, headers, rows = await run_in_threadpool(answer, bundle, body, request.headers.get(HEADER_LENGTH), max_batch)
        metrics.rows.labels(contract.model_name).inc(rows)
        return Response(content, headers=headers)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 past `limit` bytes (declared, or counted while streaming)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProtocolError(413, f"request body of {declared} bytes exceeds the limit of {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProtocolError(413, f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def answer(bundle: Bundle, body: bytes, header_length: str | None, max_batch: int) -> tuple[bytes, dict[str, str], int]:
    """(response body, headers, rows inferred) for one infer request body."""
    request = parse_infer(body, header_length, bundle.contract, max_batch)
    probs = bundle.run(request.inputs)  # inputs checked above
    return *encode_response(bundle.contract, request, probs), len(probs)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=SERVER_NAME, description=__doc__.strip().splitlines()[0])
    parser.add_argument("--bundle", default="artifacts/deploy", help="deploy bundle folder (default: %(default)s)")
    parser.add_argument("--variant", default=None,
                        help="model variant in the bundle, e.g. fp32 or int8 (default: the bundle's default_variant)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s; 0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: %(default)s)")
    parser.add_argument("--max-batch", type=int, default=None,
                        help="rows per request beyond which it is refused with 413 (default: the bundle's, else 8192)")
    parser.add_argument("--max-request-bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES, help="(default: %(default)s)")
    args = parser.parse_args(argv)
    if (args.max_batch is not None and args.max_batch < 1) or args.max_request_bytes < 1:
        parser.error("--max-batch and --max-request-bytes must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        bundle = load_bundle(Path(args.bundle), args.variant)
    except DeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(err.code)
    max_batch = args.max_batch or read_manifest(Path(args.bundle))["config"]["deploy"].get("max_batch", DEFAULT_MAX_BATCH)
    log.info("serving on http://%s:%d (max batch %d): %s", args.host, args.port, max_batch, bundle.summary())
    uvicorn.run(create_app(bundle, max_batch, args.max_request_bytes), host=args.host, port=args.port,
                access_log=False, log_level="info")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
