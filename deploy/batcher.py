"""Dynamic batching, as Triton's dynamic batcher does it: requests from any event loop queue up, one
inference thread takes them in arrival order and runs them together in one ONNX Runtime call.

    batcher = Batcher(bundle.run, BatchPolicy(max_batch_rows=256, max_queue_delay_us=0, max_queue_size=1024))
    batcher.start()
    probs = await batcher.infer(inputs)      # float32 N x ... -> float32 N x classes; QueueFull past the bound
    batcher.stop()                            # runs what is queued, then ends the thread

The thread takes the oldest request and waits at most `max_queue_delay_us` after its arrival for
more rows, up to `max_batch_rows` (a request larger than that runs alone). With a delay of 0 it takes
whatever is queued at once: under load, requests arriving while a batch runs form the next one, so
batches grow with the load without adding any wait at low load. One thread owns the model, so no
thread per request waits on the GIL or on ORT's pool, and each batch wakes each event loop once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


class QueueFull(Exception):
    """The queue holds `max_queue_size` requests: answer 503 / UNAVAILABLE, never queue without bound."""


@dataclass(frozen=True)
class BatchPolicy:
    max_batch_rows: int = 256  # rows per ORT call beyond which the queue waits for the next one
    max_queue_delay_us: int = 0  # longest wait after the oldest request's arrival to fill a batch (Triton's name)
    max_queue_size: int = 1024  # queued requests beyond which new ones are refused

    def __post_init__(self) -> None:
        if self.max_batch_rows < 1 or self.max_queue_size < 1 or self.max_queue_delay_us < 0:
            raise ValueError(f"invalid batch policy {self}")


@dataclass
class Statistics:
    """Counters in Triton's statistics extension's terms (durations in ns), written by the inference
    thread only; `batches` maps rows per execution to [executions, their compute ns]."""

    inference_count: int = 0  # rows inferred
    request_count: int = 0
    execution_count: int = 0  # ORT calls
    fail_count: int = 0  # requests whose batch raised
    queue_ns: int = 0  # summed over requests: arrival to the start of their batch
    success_ns: int = 0  # summed over answered requests: arrival to the end of their batch
    compute_ns: int = 0  # summed over executions
    last_inference_ms: int = 0  # Unix time of the last execution, ms
    batches: dict[int, list[int]] = field(default_factory=dict)


class _Request:
    __slots__ = ("inputs", "future", "loop", "arrived_ns")

    def __init__(self, inputs: np.ndarray, future: asyncio.Future | concurrent.futures.Future,
                 loop: asyncio.AbstractEventLoop | None) -> None:
        self.inputs, self.future, self.loop = inputs, future, loop
        self.arrived_ns = time.perf_counter_ns()


Observer = Callable[[int, list[float]], None]  # (rows of one batch, each request's queue seconds): histograms


class Batcher:
    def __init__(self, run: Callable[[np.ndarray], np.ndarray], policy: BatchPolicy, observe: Observer | None = None) -> None:
        self._run, self.policy, self._observe = run, policy, observe
        self.stats = Statistics()
        self._queue: deque[_Request] = deque()
        self._rows = 0  # rows queued
        self._ready = threading.Condition(threading.Lock())
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="mlp-batcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Run every queued request, then end the thread."""
        with self._ready:
            self._stopping = True
            self._ready.notify()
        self._thread.join(timeout)

    @property
    def queued(self) -> int:
        return len(self._queue)

    def infer(self, inputs: np.ndarray) -> asyncio.Future:
        """A future of the rows' outputs, resolved on the calling event loop; raises QueueFull."""
        loop = asyncio.get_running_loop()
        return self._enqueue(_Request(inputs, loop.create_future(), loop))

    def infer_blocking(self, inputs: np.ndarray) -> np.ndarray:
        """The rows' outputs, for a caller on a thread of its own (no event loop); raises QueueFull."""
        return self._enqueue(_Request(inputs, concurrent.futures.Future(), None)).result()

    def _enqueue(self, request: _Request):
        with self._ready:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if len(self._queue) >= self.policy.max_queue_size:
                raise QueueFull(f"{len(self._queue)} requests are queued, the server's limit (--max-queue-size)")
            self._queue.append(request)
            self._rows += len(request.inputs)
            self._ready.notify()
        return request.future

    def _loop(self) -> None:
        while batch := self._next_batch():
            self._execute(batch)

    def _next_batch(self) -> list[_Request]:
        """The oldest requests, up to max_batch_rows, after waiting at most the delay for them; [] to stop."""
        policy = self.policy
        with self._ready:
            while not self._queue:
                if self._stopping:
                    return []
                self._ready.wait()
            deadline_ns = self._queue[0].arrived_ns + policy.max_queue_delay_us * 1000
            while self._rows < policy.max_batch_rows and not self._stopping:
                left_s = (deadline_ns - time.perf_counter_ns()) / 1e9
                if left_s <= 0:
                    break
                self._ready.wait(left_s)
            batch = [self._queue.popleft()]  # the oldest always goes, however many rows it has
            rows = len(batch[0].inputs)
            while self._queue and rows + len(self._queue[0].inputs) <= policy.max_batch_rows:
                request = self._queue.popleft()
                batch.append(request)
                rows += len(request.inputs)
            self._rows -= rows
        return batch

    def _execute(self, batch: list[_Request]) -> None:
        started = time.perf_counter_ns()
        inputs = batch[0].inputs if len(batch) == 1 else np.concatenate([r.inputs for r in batch])
        try:
            outputs, error = self._run(inputs), None
        except Exception as err:  # noqa: BLE001 - handed to every waiting request, which answers with it
            outputs, error = None, err
        ended = time.perf_counter_ns()
        self._count(batch, len(inputs), started, ended, error)
        results, offset = [], 0
        for request in batch:  # views into one output array: each request's rows
            rows = len(request.inputs)
            results.append(error if error is not None else outputs[offset:offset + rows])
            offset += rows
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for request, result in zip(batch, results):
            if request.loop is None:  # a blocked thread: wake it directly
                _resolve([(request.future, result)])
            else:
                by_loop.setdefault(request.loop, []).append((request.future, result))
        for loop, answers in by_loop.items():  # one wake-up per event loop per batch
            loop.call_soon_threadsafe(_resolve, answers)

    def _count(self, batch: list[_Request], rows: int, started: int, ended: int, error: Exception | None) -> None:
        stats, waits = self.stats, [started - request.arrived_ns for request in batch]
        stats.request_count += len(batch)
        stats.execution_count += 1
        stats.compute_ns += ended - started
        stats.queue_ns += sum(waits)
        stats.last_inference_ms = int(time.time() * 1000)
        per_size = stats.batches.setdefault(rows, [0, 0])
        per_size[0] += 1
        per_size[1] += ended - started
        if error is not None:
            stats.fail_count += len(batch)
        else:
            stats.inference_count += rows
            stats.success_ns += sum(waits) + len(batch) * (ended - started)
        if self._observe is not None:
            self._observe(rows, [ns / 1e9 for ns in waits])


def _resolve(answers: list[tuple[asyncio.Future | concurrent.futures.Future, object]]) -> None:
    for future, result in answers:
        if future.done():  # its client went away and the request was cancelled
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)
