"""deploy.serve.batcher in one process: batched answers equal unbatched ones, the delay and row bounds hold,
the queue is bounded, errors reach every request of their batch, a refused request only itself,
stop() answers what is queued."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from deploy.batch_policy import BatchPolicy
from deploy.bundle import load_bundle
from deploy.serve.batcher import Batcher, QueueFull, _Request, _stacked
from deploy.serve.statistics import Statistics
from export.parity import ABS_TOL


@pytest.fixture(scope="module")
def bundle(mnist_bundle):
    return load_bundle(mnist_bundle, None, {"allow_spinning": False})


@pytest.fixture(scope="module")
def rows(mnist):
    return mnist.held_out.inputs[:64].numpy()


def make_batcher(run, **limits) -> tuple[Batcher, Statistics]:
    """A batcher reporting to Triton's statistics (as the server's does, beside its metrics)."""
    statistics = Statistics()
    return Batcher(run, BatchPolicy(**limits), statistics.record), statistics


def run_together(batcher: Batcher, requests: list[np.ndarray]) -> list[np.ndarray]:
    """Submit every request at once from one event loop; their answers in order."""
    async def submit() -> list[np.ndarray]:
        return list(await asyncio.gather(*[batcher.infer(r) for r in requests]))
    return asyncio.run(submit())


def test_batched_answers_equal_unbatched_ones(bundle, rows):
    batcher, stats = make_batcher(bundle.run, max_batch=64, max_queue_delay_us=200_000, max_queue_size=128)
    batcher.start()
    requests = [rows[i:i + 1] for i in range(48)] + [rows[48:64]]  # 48 single rows and one of 16
    try:
        answers = run_together(batcher, requests)
    finally:
        batcher.stop()
    assert stats.execution_count == 1 and list(stats.batches) == [64]
    alone = [bundle.run(r) for r in requests]  # the oracle: each request in its own ORT call
    for got, expected in zip(answers, alone):
        assert got.shape == expected.shape
        assert (got.argmax(1) == expected.argmax(1)).all()
        np.testing.assert_allclose(got, expected, rtol=0, atol=ABS_TOL)


def test_a_full_batch_runs_without_waiting_for_the_delay(bundle, rows):
    batcher, stats = make_batcher(bundle.run, max_batch=4, max_queue_delay_us=30_000_000, max_queue_size=8)
    batcher.start()
    started = time.monotonic()
    try:
        answers = run_together(batcher, [rows[i:i + 1] for i in range(4)])
    finally:
        batcher.stop()
    assert len(answers) == 4 and time.monotonic() - started < 20  # the 30 s delay was not waited out
    assert stats.execution_count == 1


def test_batching_off_runs_every_request_alone(bundle, rows):
    batcher, stats = make_batcher(bundle.run, max_batch=1, max_queue_delay_us=0, max_queue_size=64)
    batcher.start()
    try:
        run_together(batcher, [rows[i:i + 1] for i in range(10)] + [rows[10:15]])  # a 5-row request still runs
    finally:
        batcher.stop()
    assert stats.execution_count == 11 and stats.inference_count == 15


def test_the_queue_is_bounded_and_stop_answers_what_is_queued(rows):
    release = threading.Event()

    def slow_run(inputs: np.ndarray) -> np.ndarray:
        release.wait(60)  # holds the inference thread until the test lets go
        return inputs.reshape(len(inputs), -1)[:, :10]

    batcher, stats = make_batcher(slow_run, max_batch=1, max_queue_delay_us=0, max_queue_size=2)
    batcher.start()

    async def scenario() -> list:
        first = batcher.infer(rows[:1])  # taken by the thread, which blocks in slow_run
        while batcher.queued:
            await asyncio.sleep(0.001)
        queued = [batcher.infer(rows[i:i + 1]) for i in (1, 2)]  # the queue's two places
        with pytest.raises(QueueFull, match="2 requests are queued"):
            batcher.infer(rows[3:4])
        stopping = threading.Thread(target=batcher.stop)  # stop() while two requests wait and one runs
        stopping.start()
        while not batcher._stopping:
            await asyncio.sleep(0.001)
        with pytest.raises(QueueFull, match="shutting down"):
            batcher.infer(rows[3:4])
        release.set()
        answers = await asyncio.gather(first, *queued)
        stopping.join(60)
        return answers

    answers = asyncio.run(scenario())
    assert [a.shape for a in answers] == [(1, 10)] * 3  # stop() ran what was queued before ending
    assert not batcher.alive and stats.execution_count == 3


def test_flush_stops_waiting_for_the_delay(bundle, rows):
    batcher, stats = make_batcher(bundle.run, max_batch=64, max_queue_delay_us=600_000_000, max_queue_size=8)
    batcher.start()

    async def scenario() -> np.ndarray:
        waiting = batcher.infer(rows[:2])  # 2 of 64 rows: would wait ten minutes for more
        while batcher.queued == 0:
            await asyncio.sleep(0.001)
        batcher.flush()
        return await asyncio.wait_for(waiting, 60)

    try:
        answer = asyncio.run(scenario())
    finally:
        batcher.stop()
    np.testing.assert_allclose(answer, bundle.run(rows[:2]), rtol=0, atol=ABS_TOL)


def test_an_error_reaches_every_request_of_its_batch(rows):
    def failing(inputs: np.ndarray) -> np.ndarray:
        raise RuntimeError(f"bad batch of {len(inputs)}")

    batcher, stats = make_batcher(failing, max_batch=8, max_queue_delay_us=100_000, max_queue_size=8)
    batcher.start()

    async def submit() -> list:
        return await asyncio.gather(*[batcher.infer(rows[i:i + 1]) for i in range(3)], return_exceptions=True)

    try:
        results = asyncio.run(submit())
        survived = batcher.alive  # the thread lives on to run the next batch
    finally:
        batcher.stop()
    assert survived and [str(r) for r in results] == ["bad batch of 3"] * 3
    assert (stats.fail[0], stats.success[0], stats.inference_count) == (3, 0, 0)


def test_a_refused_request_gets_its_refusal_and_its_batch_the_answers(bundle, rows):
    def refuse(inputs: np.ndarray) -> Exception | None:  # as the server's value check: NaN refused
        return None if np.isfinite(inputs).all() else ValueError(f"{len(inputs)} rows hold NaN")

    statistics = Statistics()
    batcher = Batcher(bundle.run, BatchPolicy(max_batch=8, max_queue_delay_us=600_000_000, max_queue_size=8), statistics.record, refuse)
    batcher.start()
    bad = rows[2:3].copy()
    bad[0, 0, 5, 5] = np.nan
    requests = [rows[0:1], rows[1:2], bad, rows[3:8]]  # 8 rows: the batch is full at once

    async def submit() -> list:
        return await asyncio.gather(*[batcher.infer(r) for r in requests], return_exceptions=True)

    try:
        results = asyncio.run(submit())
    finally:
        batcher.stop()
    assert str(results[2]) == "1 rows hold NaN"
    good = np.concatenate([requests[0], requests[1], requests[3]])
    np.testing.assert_allclose(np.concatenate([results[0], results[1], results[3]]), bundle.run(good), rtol=0, atol=ABS_TOL)
    # the refused request never ran: one execution of the other 7 rows, as Triton counts them
    assert (statistics.execution_count, list(statistics.batches), statistics.success[0]) == (1, [7], 3)


def test_requests_from_two_event_loops_share_a_batch(bundle, rows):
    # 8 rows fill the batch long before the ten-minute delay: one execution, whatever the speed
    batcher, stats = make_batcher(bundle.run, max_batch=8, max_queue_delay_us=600_000_000, max_queue_size=8)
    batcher.start()
    answers: dict[str, list[np.ndarray]] = {}

    def loop_in_a_thread(name: str, part: slice) -> None:
        answers[name] = run_together(batcher, [rows[i:i + 1] for i in range(part.start, part.stop)])

    threads = [threading.Thread(target=loop_in_a_thread, args=(name, part)) for name, part in (("a", slice(0, 4)), ("b", slice(4, 8)))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    finally:
        batcher.stop()
    np.testing.assert_allclose(np.concatenate(answers["a"] + answers["b"]), bundle.run(rows[:8]), rtol=0, atol=ABS_TOL)
    assert stats.execution_count == 1  # each loop was woken for its half of one batch


def test_a_batchs_rows_are_stacked_as_numpy_would_concatenate_them(rows):
    """_stacked copies with bytes.join (it keeps the GIL); np.concatenate is the oracle, on requests
    of one and of several rows, and on a strided view (copied to contiguous rows first)."""
    loop = asyncio.new_event_loop()
    try:
        requests = [_Request(r, loop.create_future(), loop) for r in (rows[:1], rows[1:4], rows[10:20:3], rows[30:31])]
        stacked = _stacked(requests)
        assert _stacked(requests[:1]) is requests[0].inputs  # one request: its own array, no copy
    finally:
        loop.close()
    expected = np.concatenate([r.inputs for r in requests])
    assert stacked.dtype == expected.dtype and stacked.shape == expected.shape == (9, *rows.shape[1:])
    assert np.array_equal(stacked, expected)
