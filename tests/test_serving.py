"""mlp-serve's dynamic batching and its behaviour under abuse, from outside: the statistics extension
shows batches forming, a full queue answers 503 (HTTP) and UNAVAILABLE or RESOURCE_EXHAUSTED (gRPC),
SIGTERM answers what is in flight and exits 0, stalled clients hold up no one, memory stays flat,
and --workers N serves on one port. The full-size figures come from `make bench-serve`."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from bench import serve_robustness
from bench.serve_load import infer_requests, parse_head
from conftest import free_port, running_server
from deploy.bundle import load_bundle


@pytest.fixture(scope="module")
def requests(mnist_bundle, mnist):
    """Batch-1 binary requests for the first 64 held-out images, with the bundle's classes."""
    inputs = mnist.held_out.inputs[:64].numpy()
    expected = load_bundle(mnist_bundle).predict(inputs).argmax(1)
    return infer_requests("127.0.0.1", "/v2/models/mnist_mlp/infer", inputs, expected, "binary")


def get_json(address: str, path: str) -> dict:
    with urllib.request.urlopen(f"http://{address}{path}", timeout=30) as response:
        return json.loads(response.read())


async def send_all(address: str, wires: list[bytes]) -> list[tuple[int, bytes]]:
    """Each request on its own connection, all at once: (status, body) per request."""
    host, port = address.split(":")

    async def one(wire: bytes) -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(wire)
        status, length, _ = parse_head(await reader.readuntil(b"\r\n\r\n"))
        body = await reader.readexactly(length)
        writer.close()
        return status, body

    return await asyncio.gather(*[one(w) for w in wires])


def test_the_statistics_show_concurrent_requests_batched(mnist_bundle, requests):
    with running_server(mnist_bundle, "--max-queue-delay-us", "200000") as address:
        answers = asyncio.run(send_all(address, [r.wire for r in requests[:16]]))
        stats = get_json(address, "/v2/models/mnist_mlp/stats")["model_stats"][0]
        assert get_json(address, "/v2/models/mnist_mlp/versions/1/stats") == get_json(address, "/v2/models/stats")
    assert [status for status, _ in answers] == [200] * 16
    assert stats["inference_count"] == 16 and stats["execution_count"] < 16  # the 200 ms delay let them meet
    assert sum(b["compute_infer"]["count"] * b["batch_size"] for b in stats["batch_stats"]) == 16
    assert stats["inference_stats"]["queue"]["count"] == 16 and stats["inference_stats"]["queue"]["ns"] > 0


def test_a_full_queue_is_503_over_http_and_refused_over_grpc(mnist_bundle, requests, mnist):
    port = free_port()
    flags = ("--max-queue-size", "1", "--max-queue-delay-us", "1000000")  # one request waits a second; no room for more
    with running_server(mnist_bundle, *flags, grpc_port=port) as address:
        answers = asyncio.run(send_all(address, [r.wire for r in requests[:4]]))
        client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
        tensor = triton_grpc.InferInput("image", [1, 1, 28, 28], "FP32")
        tensor.set_data_from_numpy(mnist.held_out.inputs[:1].numpy())
        asyncio.run(send_all(address, [requests[0].wire]))  # the queue is free again after each batch
        results = []
        for _ in range(3):
            client.async_infer("mnist_mlp", [tensor], callback=lambda result, error: results.append(error))
        while len(results) < 3:
            asyncio.run(asyncio.sleep(0.05))
        metrics = urllib.request.urlopen(f"http://{address}/metrics", timeout=30).read().decode()
    statuses = sorted(status for status, _ in answers)
    assert statuses.count(200) >= 1 and set(statuses) == {200, 503}
    assert all(b"server busy" in body for status, body in answers if status == 503)
    codes = sorted(str(e.status()) if isinstance(e, InferenceServerException) else "OK" for e in results)
    assert "OK" in codes and set(codes) - {"OK"} <= {"StatusCode.UNAVAILABLE", "StatusCode.RESOURCE_EXHAUSTED"} and len(set(codes)) > 1
    assert 'mlp_inference_failures_total{model="mnist_mlp",status="503"}' in metrics
    assert "mlp_batch_rows_bucket" in metrics and "mlp_queue_duration_seconds_bucket" in metrics


def test_sigterm_answers_the_requests_in_flight_and_exits_0(mnist_bundle, requests):
    result = serve_robustness.drain(mnist_bundle, requests, in_flight=16)
    assert (result["answered_200"], result["exit_code"], result["drain_logged"]) == (16, 0, True), result


def test_256_clients_get_right_answers_or_clean_503s(mnist_bundle, requests):
    result = serve_robustness.overload(mnist_bundle, requests, clients=256, seconds=2, queue_size=16)
    assert result["clean"] and "503" in result["statuses"] and "200" in result["statuses"], result


def test_stalled_clients_hold_up_no_one(mnist_bundle, requests):
    result = serve_robustness.stalled(mnist_bundle, requests, stalled_clients=20, seconds=1, clients=4)
    assert result["still_open_unanswered"] == 20  # neither answered nor dropped: they may still send the rest
    assert set(result["beside_stalled"]["statuses"]) == {"200"} and result["beside_stalled"]["req_per_s"] > 0, result


def test_memory_stays_flat_over_many_requests(mnist_bundle, requests):
    result = serve_robustness.memory(mnist_bundle, requests, checkpoints=(3_000, 20_000))
    assert result["growth_mib"] < 8, result


def test_workers_share_one_port_and_stop_together(mnist_bundle, requests):
    with running_server(mnist_bundle, "--workers", "2") as address:
        answers = asyncio.run(send_all(address, [r.wire for r in requests[:32]]))
        assert get_json(address, "/v2/health/ready") == {"ready": True}
    assert [status for status, _ in answers] == [200] * 32  # running_server checks the exit code is 0
    classes = [int(np.frombuffer(body[-40:], dtype="<f4").argmax()) for _, body in answers]
    assert classes == [r.expected for r in requests[:32]]
