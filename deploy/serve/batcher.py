"""Dynamic batching, as Triton's dynamic batcher does it: requests from any event loop queue up, one
inference thread takes them in arrival order and runs them together in one ONNX Runtime call.

    batcher = Batcher(bundle.run, BatchPolicy(max_batch=8192, max_queue_delay_us=0, max_queue_size=1024), record)
    batcher.start()
    probs = await batcher.infer(inputs)      # float32 N x ... -> float32 N x classes; QueueFull past the bound
    batcher.flush()                           # SIGTERM: stop waiting out delays, run what comes at once
    batcher.stop()                            # runs what is queued, then ends the thread

The thread takes the oldest request and waits at most `max_queue_delay_us` after its arrival for
more rows, up to `max_batch` (a request larger than that runs alone). With a delay of 0 it takes
whatever is queued at once: under load, requests arriving while a batch runs form the next one, so
batches grow with the load without adding any wait at low load. One thread owns the model, so no
thread per request waits on ORT's pool, and each batch wakes each event loop once. Whatever a batch
raises reaches each of its requests; the thread itself never dies of it (`alive` says if it did).

`refuse(rows)` (optional) says whether the model may see some rows: None, or the error to answer
with. It runs once on each batch's rows (two reductions over all of them, not two per request, and
no numpy call in the event loop that gives the GIL away); only when a batch is refused is each of
its requests asked alone, so a bad request gets its error and the others their answers.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from deploy.batch_policy import BatchPolicy


class QueueFull(Exception):
    """The queue holds `max_queue_size` requests: answer 503 / UNAVAILABLE, never queue without bound."""


@dataclass(frozen=True)
class BatchRecord:
    """One execution, as the batcher reports it to `record` (from its thread, once per ORT call): the
    one path that feeds both the statistics extension and the Prometheus series (deploy.serve.service)."""

    rows: int
    waits_ns: list[int]  # each request's wait in the queue for this batch
    compute_ns: int  # the ORT call
    failed: bool


class _Request:
    __slots__ = ("inputs", "future", "loop", "arrived_ns")

    def __init__(self, inputs: np.ndarray, future: asyncio.Future, loop: asyncio.AbstractEventLoop) -> None:
        self.inputs, self.future, self.loop = inputs, future, loop
        self.arrived_ns = time.perf_counter_ns()


class Batcher:
    def __init__(self, run: Callable[[np.ndarray], np.ndarray], policy: BatchPolicy, record: Callable[[BatchRecord], None],
                 refuse: Callable[[np.ndarray], Exception | None] | None = None) -> None:
        self._run, self.policy, self._record, self._refuse = run, policy, record, refuse
        self._queue: deque[_Request] = deque()
        self._rows = 0  # rows queued
        self._ready = threading.Condition(threading.Lock())
        self._waiting = False  # the thread waits on _ready: only then does a new request notify it
        self._stopping = False
        self._flushing = False  # no more waiting for the delay (draining)
        self._thread = threading.Thread(target=self._loop, name="mlp-batcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def flush(self) -> None:
        """From now on run queued requests at once, without waiting for the delay (a drain must not
        wait out a long --max-queue-delay-us); new requests are still taken."""
        with self._ready:
            self._flushing = True
            self._ready.notify()

    def stop(self, timeout: float = 30) -> None:
        """Run every queued request, then end the thread; new requests get QueueFull."""
        with self._ready:
            self._stopping = self._flushing = True
            self._ready.notify()
        self._thread.join(timeout)

    @property
    def queued(self) -> int:
        """Requests waiting for a batch now (the mlp_queue_requests gauge)."""
        return len(self._queue)

    @property
    def alive(self) -> bool:
        """False once the inference thread has ended: readiness must say so."""
        return self._thread.is_alive()

    def infer(self, inputs: np.ndarray) -> asyncio.Future:
        """A future of the rows' outputs, resolved on the calling event loop; raises QueueFull."""
        loop = asyncio.get_running_loop()
        request = _Request(inputs, loop.create_future(), loop)
        with self._ready:
            if self._stopping:
                raise QueueFull("the server is shutting down")
            if len(self._queue) >= self.policy.max_queue_size:
                raise QueueFull(f"{len(self._queue)} requests are queued, the server's limit (--max-queue-size)")
            self._queue.append(request)
            self._rows += len(inputs)
            if self._waiting:  # under load the thread is running a batch: Condition.notify would cost 0.4 µs for nobody
                self._ready.notify()
        return request.future

    def _loop(self) -> None:
        while batch := self._next_batch():
            self._execute(batch)

    def _next_batch(self) -> list[_Request]:
        """The oldest requests, up to max_batch rows, after waiting at most the delay for them; [] to stop."""
        policy = self.policy
        with self._ready:
            while not self._queue:
                if self._stopping:
                    return []
                self._wait(None)
            deadline_ns = self._queue[0].arrived_ns + policy.max_queue_delay_us * 1000
            while self._rows < policy.max_batch and not self._flushing:
                left_s = (deadline_ns - time.perf_counter_ns()) / 1e9
                if left_s <= 0:
                    break
                self._wait(left_s)
            batch = [self._queue.popleft()]  # the oldest always goes, however many rows it has
            rows = len(batch[0].inputs)
            while self._queue and rows + len(self._queue[0].inputs) <= policy.max_batch:
                request = self._queue.popleft()
                batch.append(request)
                rows += len(request.inputs)
            self._rows -= rows
        return batch

    def _wait(self, timeout_s: float | None) -> None:
        """Wait on _ready (its lock held) for a request, a flush or a stop, or at most `timeout_s`."""
        self._waiting = True
        try:
            self._ready.wait(timeout_s)
        finally:
            self._waiting = False

    def _admitted(self, batch: list[_Request]) -> tuple[list[_Request], np.ndarray | None]:
        """The requests whose rows `refuse` lets through (nearly always all: one check per batch) and
        their rows; the others are answered with their refusal here."""
        inputs = _stacked(batch)
        if self._refuse is None or self._refuse(inputs) is None:
            return batch, inputs
        refusals = [self._refuse(request.inputs) for request in batch]
        _deliver([r for r, refusal in zip(batch, refusals) if refusal], [refusal for refusal in refusals if refusal])
        batch = [r for r, refusal in zip(batch, refusals) if refusal is None]
        return batch, _stacked(batch) if batch else None

    def _execute(self, batch: list[_Request]) -> None:
        """Run one batch and answer each request with its rows, or with what the batch raised."""
        started = time.perf_counter_ns()
        try:
            batch, inputs = self._admitted(batch)
            if not batch:
                return
            outputs = self._run(inputs)
            results, offset = [], 0
            for request in batch:  # views into one output array: each request's rows
                results.append(outputs[offset:offset + len(request.inputs)])
                offset += len(request.inputs)
            error = None
        except Exception as err:  # noqa: BLE001 - not swallowed: every request of the batch answers with it
            results, error = [err] * len(batch), err  # (one already refused keeps its refusal: _resolve)
        ended = time.perf_counter_ns()
        rows = sum(len(request.inputs) for request in batch)
        self._record(BatchRecord(rows, [started - request.arrived_ns for request in batch], ended - started, error is not None))
        _deliver(batch, results)


def _stacked(batch: list[_Request]) -> np.ndarray:
    """The batch's rows in one array. Copied by bytes.join, which keeps the GIL: np.concatenate gives
    it away during each request's copy (numpy does for copies over 500 elements; an MNIST row is 784),
    and every time the event loop took it and this thread waited to get it back."""
    first = batch[0].inputs
    if len(batch) == 1:
        return first
    joined = b"".join([np.ascontiguousarray(request.inputs, first.dtype).data for request in batch])
    return np.frombuffer(joined, first.dtype).reshape(-1, *first.shape[1:])


def _deliver(batch: list[_Request], results: list) -> None:
    """Resolve each request's future on its event loop, one wake-up per loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for request, result in zip(batch, results):
        by_loop.setdefault(request.loop, []).append((request.future, result))
    for loop, answers in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, answers)
        except RuntimeError:  # that loop has closed: nobody is left to answer
            pass


def _resolve(answers: list[tuple[asyncio.Future, object]]) -> None:
    for future, result in answers:
        if future.done():  # its client went away and the request was cancelled
            continue
        if isinstance(result, Exception):
            future.set_exception(result)
        else:
            future.set_result(result)
