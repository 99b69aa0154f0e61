"""The server's Prometheus series (GET /metrics), torch-free; Triton's statistics are deploy.serve.statistics,
fed from the same batch records (deploy.serve.service).

Series: from the protocol front-ends mlp_http_requests_total{method,route,status},
mlp_request_duration_seconds{method,route} (histogram) and mlp_grpc_requests_total{method,code}; per
model version (labels model, version) mlp_inference_failures_total{...,status}, and from the batcher's
records mlp_inference_rows_total, mlp_queue_duration_seconds (each request's wait for its batch) and
mlp_batch_rows (rows per ONNX Runtime call); mlp_queue_requests (requests queued now, per loaded
version) is read when scraped.

The series fed once per request or once per queued request are kept here (`_Counts`, `_Histogram`)
and handed to prometheus_client at scrape time, not as its Counter and Histogram: those take a lock
and, for a histogram, scan the buckets on every observation. That cost 1.4 µs a request in the
event loop, and 25 of the 62 µs the batcher holds the GIL to answer a batch of 32 requests, while
the event loop waits for it. Here a request costs a dictionary update and a bisect, and a batch's
waits go into the queue histogram in one numpy call.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Callable, Sequence

import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

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
        self._requests = _Counts("mlp_http_requests", "HTTP requests by route and status", ["method", "route", "status"])
        self._latency = _Histogram("mlp_request_duration_seconds", "time from request to response, by route",
                                   ["method", "route"], LATENCY_BUCKETS)
        self._grpc = Counter("mlp_grpc_requests", "gRPC calls by method and status code", ["method", "code"], registry=registry)
        self.failures = Counter("mlp_inference_failures", "infer requests answered with an error, by status",
                                [*MODEL_LABELS, "status"], registry=registry)
        self.rows = Counter("mlp_inference_rows", "input rows inferred", MODEL_LABELS, registry=registry)
        self.queue = _Histogram("mlp_queue_duration_seconds", "a request's wait in the queue for its batch", MODEL_LABELS, QUEUE_BUCKETS)
        self.batch = Histogram("mlp_batch_rows", "rows per ONNX Runtime call", MODEL_LABELS, buckets=BATCH_BUCKETS, registry=registry)
        self.queued: dict[tuple[str, str], Callable[[], int]] = {}  # (model, version) -> its queue's length now
        for collector in (self._requests, self._latency, self.queue, _QueueGauge(self.queued)):
            registry.register(collector)
        self._grpc_children: dict[tuple[str, str], object] = {}  # (method, code) -> its counter

    def model(self, name: str, version: str, queued: Callable[[], int]) -> ModelMetrics:
        """The series of one loaded model version; its queue gauge is read from `queued` at each scrape."""
        self.queued[(name, version)] = queued
        return ModelMetrics(self, name, version)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self._requests.inc((method, route, status))
        self._latency.observe((method, route), seconds)

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
        self.rows, self.batch = metrics.rows.labels(name, version), metrics.batch.labels(name, version)
        self._queue = metrics.queue

    def failure(self, status: int | str) -> None:
        self._metrics.failure(*self._key, status)

    def record_batch(self, batch: BatchRecord) -> None:
        """From the batcher's thread, once per ORT call (the path that also feeds deploy.serve.statistics)."""
        self.batch.observe(batch.rows)
        self._queue.observe_many(self._key, np.array(batch.waits_ns, dtype=np.float64) / 1e9)
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


class _Counts:
    """A counter series for one writer, the event loop: a dictionary of counts by label values."""

    def __init__(self, name: str, documentation: str, labels: list[str]) -> None:
        self._name, self._documentation, self._labels = name, documentation, labels
        self._counts: dict[tuple, int] = {}

    def inc(self, labels: tuple) -> None:
        self._counts[labels] = self._counts.get(labels, 0) + 1

    def collect(self):
        family = CounterMetricFamily(self._name, self._documentation, labels=self._labels)
        for labels, count in list(self._counts.items()):
            family.add_metric([str(value) for value in labels], count)
        yield family


class _Histogram:
    """A histogram series with Prometheus' buckets (`le`: observations <= the bound), fed one
    observation at a time (`observe`) or a batch's at once (`observe_many`, from the batcher's
    thread: one lock and one numpy call a batch). Exposed exactly as prometheus_client's Histogram
    exposes the same observations (tests/test_metrics.py holds one against the other)."""

    def __init__(self, name: str, documentation: str, labels: list[str], buckets: Sequence[float]) -> None:
        self._name, self._documentation, self._labels = name, documentation, labels
        self._bounds = [*buckets, float("inf")]
        self._bounds_array = np.array(self._bounds)
        self._series: dict[tuple, list] = {}  # label values -> [count per bucket (not cumulative), sum]
        self._lock = threading.Lock()

    def observe(self, labels: tuple, value: float) -> None:
        with self._lock:
            series = self._series.get(labels) or self._new(labels)
            series[0][bisect.bisect_left(self._bounds, value)] += 1
            series[1] += value

    def observe_many(self, labels: tuple, values: np.ndarray) -> None:
        counts = np.bincount(np.searchsorted(self._bounds_array, values, side="left"), minlength=len(self._bounds)).tolist()
        total = float(values.sum())
        with self._lock:
            series = self._series.get(labels) or self._new(labels)
            series[0] = [held + count for held, count in zip(series[0], counts)]
            series[1] += total

    def _new(self, labels: tuple) -> list:
        series = self._series[labels] = [[0] * len(self._bounds), 0.0]
        return series

    def collect(self):
        family = HistogramMetricFamily(self._name, self._documentation, labels=self._labels)
        with self._lock:
            snapshot = [(labels, list(counts), total) for labels, (counts, total) in self._series.items()]
        for labels, counts, total in snapshot:
            cumulative = itertools.accumulate(counts)
            family.add_metric([str(value) for value in labels], [(floatToGoString(bound), count) for bound, count in zip(self._bounds, cumulative)], total)
        yield family
