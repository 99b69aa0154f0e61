"""The server's Prometheus series (GET /metrics), torch-free; Triton's statistics are deploy.serve.statistics,
fed from the same batch records (deploy.serve.service).

Series: from the protocol front-ends mlp_http_requests_total{method,route,status},
mlp_request_duration_seconds{method,route} (histogram), mlp_inference_failures_total{model,status} and
mlp_grpc_requests_total{method,code}; from the batcher's records mlp_inference_rows_total{model},
mlp_queue_duration_seconds (each request's wait for its batch) and mlp_batch_rows (rows per ONNX
Runtime call); mlp_queue_requests (requests queued now) is read when scraped. The hot path resolves each label set once and keeps the child, so a
request costs a few dictionary lookups, not a label parse.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from deploy.serve.batcher import BatchRecord

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)  # s
QUEUE_BUCKETS = (0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)  # s
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)  # rows
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """One server's series, in its own registry (two servers in one process stay apart)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.registry = registry = CollectorRegistry()
        self._requests = Counter("mlp_http_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=registry)
        self._latency = Histogram("mlp_request_duration_seconds", "time from request to response, by route",
                                  ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry)
        self._failures = Counter("mlp_inference_failures", "infer requests answered with an error, by status", ["model", "status"], registry=registry)
        self.rows = Counter("mlp_inference_rows", "input rows inferred", ["model"], registry=registry).labels(model)
        self._grpc = Counter("mlp_grpc_requests", "gRPC calls by method and status code", ["method", "code"], registry=registry)
        self.queue = Histogram("mlp_queue_duration_seconds", "a request's wait in the queue for its batch",
                               buckets=QUEUE_BUCKETS, registry=registry)
        self.batch = Histogram("mlp_batch_rows", "rows per ONNX Runtime call", buckets=BATCH_BUCKETS, registry=registry)
        self._queued = Gauge("mlp_queue_requests", "requests waiting for a batch", registry=registry)
        self._children: dict[tuple, tuple] = {}

    def watch_queue(self, queued: Callable[[], float]) -> None:
        """Read the queue's length from `queued` at each scrape (nothing on the hot path)."""
        self._queued.set_function(queued)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self._requests.labels(method, route, str(status)), self._latency.labels(method, route))
        children[0].inc()
        children[1].observe(seconds)

    def failure(self, status: int | str) -> None:
        self._failures.labels(self.model, str(status)).inc()

    def grpc(self, method: str, code: str) -> None:
        self._grpc.labels(method, code).inc()

    def record_batch(self, batch: BatchRecord) -> None:
        """From the batcher's thread, once per ORT call (the path that also feeds deploy.serve.statistics)."""
        self.batch.observe(batch.rows)
        for wait_ns in batch.waits_ns:
            self.queue.observe(wait_ns / 1e9)
        if not batch.failed:
            self.rows.inc(batch.rows)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
