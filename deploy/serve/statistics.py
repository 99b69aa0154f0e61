"""Triton's statistics extension for the one served model (GET /v2/models/{m}/stats, gRPC
ModelStatistics), torch-free. Field names and meanings follow Triton's docs/protocol/
extension_statistics.md: durations in ns; `success`, `queue` and `compute_*` count successful
requests, and each request is charged its whole batch's compute time; `batch_stats` counts
executions per batch size. mlp-serve does not time input and output copies apart from the model
call, so `compute_input` and `compute_output` carry counts with 0 ns, and it has no response cache.
"""

from __future__ import annotations

import threading
import time

from deploy.serve.batcher import BatchRecord


class Statistics:
    """Written by the inference thread once per batch (`record`, from the batcher's one report path),
    read by the protocol handlers; one lock keeps every snapshot whole (no request counted as done
    but not yet as failed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.inference_count = 0  # rows inferred successfully
        self.execution_count = 0  # ONNX Runtime calls
        self.success = [0, 0]  # [requests, ns from arrival to the end of their batch]
        self.fail = [0, 0]
        self.queue_ns = 0  # successful requests' waits for their batch
        self.compute_ns = 0  # successful requests' batch compute time, each request charged its batch's
        self.last_inference_ms = 0  # Unix time of the last execution, ms
        self.batches: dict[int, list[int]] = {}  # rows -> [executions, their compute ns]

    def record(self, batch: BatchRecord) -> None:
        """One execution of `batch.rows` rows for len(batch.waits_ns) requests that waited so long for it."""
        rows, waits_ns, compute_ns, failed = batch.rows, batch.waits_ns, batch.compute_ns, batch.failed
        with self._lock:
            self.execution_count += 1
            self.last_inference_ms = int(time.time() * 1000)
            per_size = self.batches.setdefault(rows, [0, 0])
            per_size[0] += 1
            per_size[1] += compute_ns
            outcome = self.fail if failed else self.success
            outcome[0] += len(waits_ns)
            outcome[1] += sum(waits_ns) + len(waits_ns) * compute_ns
            if not failed:
                self.inference_count += rows
                self.queue_ns += sum(waits_ns)
                self.compute_ns += len(waits_ns) * compute_ns

    def triton(self, name: str, version: str) -> dict:
        """The model's entry of Triton's statistics response (`model_stats`)."""
        with self._lock:
            succeeded = self.success[0]
            zero = {"count": succeeded, "ns": 0}
            return {
                "name": name,
                "version": version,
                "last_inference": self.last_inference_ms,
                "inference_count": self.inference_count,
                "execution_count": self.execution_count,
                "inference_stats": {
                    "success": {"count": succeeded, "ns": self.success[1]},
                    "fail": {"count": self.fail[0], "ns": self.fail[1]},
                    "queue": {"count": succeeded, "ns": self.queue_ns},
                    "compute_input": zero,
                    "compute_infer": {"count": succeeded, "ns": self.compute_ns},
                    "compute_output": zero,
                    "cache_hit": {"count": 0, "ns": 0},
                    "cache_miss": {"count": 0, "ns": 0},
                },
                "batch_stats": [
                    {"batch_size": rows, "compute_input": {"count": count, "ns": 0}, "compute_infer": {"count": count, "ns": ns},
                     "compute_output": {"count": count, "ns": 0}}
                    for rows, (count, ns) in sorted(self.batches.items())
                ],
            }
