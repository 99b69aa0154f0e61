"""The server's Prometheus series (GET /metrics), torch-free; Triton's statistics are deploy.serve.statistics,
fed from the same batch records (deploy.serve.service).

Series: from the protocol front-ends mlp_http_requests_total{method,route,status},
mlp_request_duration_seconds{method,route} (histogram) and mlp_grpc_requests_total{method,code}; per
model version (labels model, version) mlp_inference_failures_total{...,status}, and from the batcher's
records mlp_inference_rows_total, mlp_queue_duration_seconds (each request's wait for its batch) and
mlp_batch_rows (rows per ONNX Runtime call); mlp_queue_requests (requests queued now, per loaded
version) is read when scraped. The hot path resolves each label set once and keeps the child, so a
request costs a few dictionary lookups, not a label parse.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from deploy.serve.batcher import BatchRecord

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)  # s
QUEUE_BUCKETS = (0.00001, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0)  # s
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)  # rows
CONTENT_TYPE = CONTENT_TYPE_LATEST
MODEL_LABELS = ["model", "version"]


class Metrics:
    """One server's series, in its own registry (two servers in one process stay apart)."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self._requests = Counter("mlp_http_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=registry)
        self._latency = Histogram("mlp_request_duration_seconds", "time from request to response, by route",
                                  ["method", "route"], buckets=LATENCY_BUCKETS, registry=registry)
        self._grpc = Counter("mlp_grpc_requests", "gRPC calls by method and status code", ["method", "code"], registry=registry)
        self.failures = Counter("mlp_inference_failures", "infer requests answered with an error, by status",
                                [*MODEL_LABELS, "status"], registry=registry)
        self.rows = Counter("mlp_inference_rows", "input rows inferred", MODEL_LABELS, registry=registry)
        self.queue = Histogram("mlp_queue_duration_seconds", "a request's wait in the queue for its batch",
                               MODEL_LABELS, buckets=QUEUE_BUCKETS, registry=registry)
        self.batch = Histogram("mlp_batch_rows", "rows per ONNX Runtime call", MODEL_LABELS, buckets=BATCH_BUCKETS, registry=registry)
        self.queued: dict[tuple[str, str], Callable[[], int]] = {}  # (model, version) -> its queue's length now
        registry.register(_QueueGauge(self.queued))
        self._children: dict[tuple, tuple] = {}  # (method, route, status) -> its two children
        self._grpc_children: dict[tuple[str, str], object] = {}  # (method, code) -> its counter

    def model(self, name: str, version: str, queued: Callable[[], int]) -> ModelMetrics:
        """The series of one loaded model version; its queue gauge is read from `queued` at each scrape."""
        self.queued[(name, version)] = queued
        return ModelMetrics(self, name, version)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (self._requests.labels(method, route, str(status)), self._latency.labels(method, route))
        children[0].inc()
        children[1].observe(seconds)

    def failure(self, model: str, version: str, status: int | str) -> None:
        self.failures.labels(model, version, str(status)).inc()

    def grpc(self, method: str, code: str) -> None:
        child = self._grpc_children.get((method, code))  # labels() costs a lock and a tuple on every call
        if child is None:
            child = self._grpc_children[(method, code)] = self._grpc.labels(method, code)
        child.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class ModelMetrics:
    """One model version's children of the server's series; the counters outlive an unload (Prometheus
    counters never go back), the queue gauge goes with it (`forget`)."""

    def __init__(self, metrics: Metrics, name: str, version: str) -> None:
        self._metrics, self._key = metrics, (name, version)
        self.rows, self.queue, self.batch = (series.labels(name, version) for series in (metrics.rows, metrics.queue, metrics.batch))

    def failure(self, status: int | str) -> None:
        self._metrics.failure(*self._key, status)

    def record_batch(self, batch: BatchRecord) -> None:
        """From the batcher's thread, once per ORT call (the path that also feeds deploy.serve.statistics)."""
        self.batch.observe(batch.rows)
        for wait_ns in batch.waits_ns:
            self.queue.observe(wait_ns / 1e9)
        if not batch.failed:
            self.rows.inc(batch.rows)

    def forget(self) -> None:
        self._metrics.queued.pop(self._key, None)


class _QueueGauge:
    """mlp_queue_requests{model,version}: read at scrape time from the loaded versions' batchers."""

    def __init__(self, queued: dict[tuple[str, str], Callable[[], int]]) -> None:
        self._queued = queued

    def collect(self):
        gauge = GaugeMetricFamily("mlp_queue_requests", "requests waiting for a batch", labels=MODEL_LABELS)
        for (name, version), queued in list(self._queued.items()):
            gauge.add_metric([name, version], queued())
        yield gauge
