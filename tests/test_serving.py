"""mlp-serve's dynamic batching and its behaviour under abuse, from outside: the statistics extension
shows batches forming, a full queue answers 503 (HTTP) and UNAVAILABLE (gRPC), a stalled body 408,
SIGTERM answers what is in flight and exits 0, stalled clients hold up no one, memory stays flat,
and --workers N serves on one port. The full-size figures come from `make bench-serve`."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.utils import InferenceServerException

from bench.serve import robustness as serve_robustness
from bench.serve.load import infer_requests, parse_head
from bench.serve.proc import wait_listening
from conftest import free_port, running_server
from deploy.bundle import load_bundle

# One worker runs these (pytest-xdist --dist loadgroup): their servers' ports are picked free, then bound.
pytestmark = pytest.mark.xdist_group("servers")


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
    # 16 rows fill a batch (--max-batch 16) long before the one-minute delay: one execution, whatever the speed
    with running_server(mnist_bundle, "--max-queue-delay-us", "60000000", "--max-batch", "16") as address:
        answers = asyncio.run(send_all(address, [r.wire for r in requests[:16]]))
        stats = get_json(address, "/v2/models/mnist_mlp/stats")["model_stats"][0]
        assert get_json(address, "/v2/models/mnist_mlp/versions/1/stats") == get_json(address, "/v2/models/stats")
    assert [status for status, _ in answers] == [200] * 16
    assert (stats["inference_count"], stats["execution_count"]) == (16, 1)
    assert [(b["batch_size"], b["compute_infer"]["count"]) for b in stats["batch_stats"]] == [(16, 1)]
    inference = stats["inference_stats"]
    assert inference["success"]["count"] == inference["queue"]["count"] == inference["compute_infer"]["count"] == 16
    # Triton's accounting: each request is charged its batch's compute time; success = queue + compute
    assert inference["compute_infer"]["ns"] == 16 * stats["batch_stats"][0]["compute_infer"]["ns"]
    assert inference["success"]["ns"] == inference["queue"]["ns"] + inference["compute_infer"]["ns"]
    assert set(inference) >= {"fail", "compute_input", "compute_output", "cache_hit", "cache_miss"}


def test_a_full_queue_is_503_over_http_and_unavailable_over_grpc(mnist_bundle, requests, mnist):
    port = free_port()
    # One request waits a minute for rows that never come: the queue (size 1) stays full until SIGTERM drains it.
    flags = ("--max-queue-size", "1", "--max-queue-delay-us", "60000000", "--max-batch", "4")
    with ThreadPoolExecutor(1) as pool:
        with running_server(mnist_bundle, *flags, grpc_port=port) as address:
            first = pool.submit(asyncio.run, send_all(address, [requests[0].wire]))
            serve_robustness.wait_queued(int(address.split(":")[1]), 1)
            refused = asyncio.run(send_all(address, [r.wire for r in requests[1:4]]))
            client = triton_grpc.InferenceServerClient(f"127.0.0.1:{port}")
            tensor = triton_grpc.InferInput("image", [1, 1, 28, 28], "FP32")
            tensor.set_data_from_numpy(mnist.held_out.inputs[:1].numpy())
            with pytest.raises(InferenceServerException) as unavailable:
                client.infer("mnist_mlp", [tensor])
            metrics = urllib.request.urlopen(f"http://{address}/metrics", timeout=30).read().decode()
        answered = first.result(timeout=60)  # answered by the drain when the server was terminated
    assert [status for status, _ in answered] == [200]
    assert [status for status, _ in refused] == [503] * 3 and all(b"server busy" in body for _, body in refused)
    assert unavailable.value.status() == "StatusCode.UNAVAILABLE" and "server busy" in unavailable.value.message()
    assert 'mlp_inference_failures_total{model="mnist_mlp",status="503",version="1"} 3.0' in metrics
    assert 'mlp_inference_failures_total{model="mnist_mlp",status="grpc:UNAVAILABLE",version="1"} 1.0' in metrics
    assert 'mlp_queue_requests{model="mnist_mlp",version="1"} 1.0' in metrics and "mlp_batch_rows_bucket" in metrics


def test_a_body_that_stops_arriving_gets_408_and_the_connection_closes(mnist_bundle, requests):
    with running_server(mnist_bundle, "--body-timeout-s", "0.3") as address:
        host, port = address.split(":")
        with socket.create_connection((host, int(port)), timeout=60) as stalled:
            stalled.sendall(requests[0].wire[:len(requests[0].wire) // 2])  # headers promise the rest
            answer = b""
            while chunk := stalled.recv(65536):  # b"": the server closed the connection after answering
                answer += chunk
        still_serving = asyncio.run(send_all(address, [requests[1].wire]))
    assert answer.startswith(b"HTTP/1.1 408") and b"the request body did not arrive within 0.3 s" in answer
    assert [status for status, _ in still_serving] == [200]


def test_sigterm_answers_the_requests_in_flight_and_exits_0(mnist_bundle, requests):
    result = serve_robustness.drain(mnist_bundle, requests, in_flight=16)  # behind a one-minute queue delay
    assert (result["answered_200"], result["exit_code"], result["drain_logged"]) == (16, 0, True), result
    assert result["seconds_from_sigterm_to_all_answered"] < 30  # the drain ran them at once, not after the delay


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
        wait_listening(int(address.split(":")[1]), 2)  # one socket per worker (SO_REUSEPORT); the first may be ready alone
        answers = asyncio.run(send_all(address, [r.wire for r in requests[:32]]))
        assert get_json(address, "/v2/health/ready") == {"ready": True}
    assert [status for status, _ in answers] == [200] * 32  # running_server checks the exit code is 0
    classes = [int(np.frombuffer(body[-40:], dtype="<f4").argmax()) for _, body in answers]
    assert classes == [r.expected for r in requests[:32]]


def test_alternating_rounds_time_every_side_in_turn_and_check_every_answer(mnist_bundle, requests):
    """bench.serve.paired against one real server on three sides (the ratios are then about 1): every
    window is a clean closed-loop run, each side gets one window a round, and the paired ratio lies
    within its round-by-round range."""
    from types import SimpleNamespace

    from bench.serve.paired import alternating_rounds, paired_throughput

    with running_server(mnist_bundle) as address:
        side = SimpleNamespace(pid=os.getpid(), http_port=int(address.split(":")[1]))  # the CPU probe reads this tree
        rounds = alternating_rounds({"ours": side, "app": side, "floor": side}, requests, clients=4, rounds=3, seconds=0.3, warmup_s=0.1)
    assert (rounds["rounds"], {s: len(w) for s, w in rounds["windows"].items()}) == (3, {"ours": 3, "app": 3, "floor": 3})
    for window in sum(rounds["windows"].values(), []):
        assert window["requests"] > 0 and window["ok"] == window["requests"] and window["wrong"] == 0
        # the main thread's CPU is part of the tree's (one clock tick of slack: both are read in ticks)
        assert 0 <= window["loop_cpu_s"] <= window["server_cpu_s"] + 0.01
    ratio = paired_throughput(rounds, "ours", "floor")
    assert ratio.rounds == 3 and ratio.low <= ratio.value <= ratio.high


def test_the_app_floor_is_mlp_serves_own_http_path_with_a_constant_model(mnist_bundle, requests):
    """bench.serve.stack_floor --app: mlp-serve's app (its routes, parsing and metrics) answering every
    request at once with uniform probabilities; a malformed request gets mlp-serve's own 400."""
    from bench.serve.__main__ import app_floor

    with app_floor(mnist_bundle) as target:
        address = f"127.0.0.1:{target.http_port}"
        answers = asyncio.run(send_all(address, [r.wire for r in requests[:4]]))
        bad = requests[0].wire.replace(b'"FP32"', b'"FP64"')
        refused = asyncio.run(send_all(address, [bad]))[0]
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as response:
            metrics = response.read().decode()
    assert [status for status, _ in answers] == [200] * 4
    np.testing.assert_array_equal(np.frombuffer(answers[0][1][-40:], "<f4"), np.full(10, 0.1, np.float32))
    assert refused[0] == 400 and b"datatype 'FP64'" in refused[1]
    assert 'mlp_http_requests_total{method="POST",route="/v2/models/{model}/infer",status="200"} 4.0' in metrics
