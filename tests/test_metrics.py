"""deploy.serve.metrics: the series it keeps itself (fed per request and per batch, cheaper than
prometheus_client's Counter and Histogram) expose exactly what prometheus_client's own exposes for
the same observations; the oracle is prometheus_client itself."""

from __future__ import annotations

import math

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from deploy.serve.batcher import BatchRecord
from deploy.serve.metrics import LATENCY_BUCKETS, QUEUE_BUCKETS, Metrics


def samples(exposition: bytes, prefix: str) -> dict[str, float]:
    """The exposition's samples of one series, name and labels -> value (no _created: prometheus_client
    stamps the time)."""
    lines = [line.rsplit(" ", 1) for line in exposition.decode().splitlines() if line.startswith(prefix) and "_created" not in line]
    return {sample: float(value) for sample, value in lines}


def assert_same(ours: dict[str, float], theirs: dict[str, float]) -> None:
    """Every count equal; each _sum equal up to the order the floats were added in."""
    assert ours.keys() == theirs.keys()
    for sample, value in theirs.items():
        if "_sum{" in sample:
            assert math.isclose(ours[sample], value, rel_tol=1e-12), sample
        else:
            assert ours[sample] == value, sample


def test_request_series_expose_what_prometheus_clients_counter_and_histogram_expose():
    rng = np.random.default_rng(0)
    registry = CollectorRegistry()
    counter = Counter("mlp_http_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=registry)
    histogram = Histogram("mlp_request_duration_seconds", "time from request to response, by route", ["method", "route"],
                          buckets=LATENCY_BUCKETS, registry=registry)
    metrics = Metrics()
    routes = [("POST", "/v2/models/{model}/infer", 200), ("POST", "/v2/models/{model}/infer", 400), ("GET", "/metrics", 200)]
    # every bucket's bound itself (le is inclusive), values between them, and past the last
    seconds = [*LATENCY_BUCKETS, *rng.exponential(0.01, 500), 7.5]
    for index, value in enumerate(seconds):
        method, route, status = routes[index % len(routes)]
        metrics.request(method, route, status, value)
        counter.labels(method, route, str(status)).inc()
        histogram.labels(method, route).observe(value)
    ours, theirs = metrics.exposition(), generate_latest(registry)
    for series in ("mlp_http_requests_total", "mlp_request_duration_seconds"):
        expected = samples(theirs, series)
        assert len(expected) >= len(routes)
        assert_same(samples(ours, series), expected)


def test_a_batchs_queue_waits_go_in_at_once_as_prometheus_client_would_count_them_one_by_one():
    rng = np.random.default_rng(1)
    registry = CollectorRegistry()
    histogram = Histogram("mlp_queue_duration_seconds", "a request's wait in the queue for its batch", ["model", "version"],
                          buckets=QUEUE_BUCKETS, registry=registry)
    metrics = Metrics()
    versions = {"1": metrics.model("m", "1", lambda: 0), "2": metrics.model("m", "2", lambda: 0)}
    for index in range(40):
        version = "1" if index % 3 else "2"
        waits_ns = [int(ns) for ns in rng.exponential(200_000, int(rng.integers(1, 65)))]
        if index == 0:
            waits_ns += [int(bound * 1e9) for bound in QUEUE_BUCKETS]  # on each bound: counted in that bucket
        versions[version].record_batch(BatchRecord(len(waits_ns), waits_ns, 1000, False))
        for wait_ns in waits_ns:
            histogram.labels("m", version).observe(wait_ns / 1e9)
    expected = samples(generate_latest(registry), "mlp_queue_duration_seconds")
    assert any('version="2"' in sample for sample in expected)
    assert_same(samples(metrics.exposition(), "mlp_queue_duration_seconds"), expected)
