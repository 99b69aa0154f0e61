"""deploy.serve.grpc_h2, gRPC over uvicorn's HTTP/2 (zttp), against real gRPC clients: tritonclient.grpc
and grpcio channels, on cleartext h2c prior knowledge (what a client without TLS sends) and on TLS
with ALPN h2. The server is uvicorn on uvloop (mlp-serve's loop) in a thread of this process, serving
a tiny servicer. (On asyncio's own loop each call took 40 ms: asyncio sets TCP_NODELAY only on sockets
made with proto IPPROTO_TCP, and a reply is three writes, headers, body, trailers.)"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import uvicorn
import uvloop
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

pytest.importorskip("zttp", reason="uvicorn's HTTP/2 needs zttp")
from deploy.serve.grpc_h2 import GrpcH2App, GrpcH2Protocol, percent_encoded  # noqa: E402 (imports zttp)

pytestmark = pytest.mark.xdist_group("servers")
LIMIT = 1 << 20  # the app's max message: small, so the too-large answer is cheap to reach
PROBS = np.array([[0.25, 0.75]], np.float32)


class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """ServerLive, and a ModelInfer that answers PROBS, NOT_FOUND for model "missing", and echoes the
    raw input's length in the response's id; every other method is the generated base class's."""

    async def ServerLive(self, request, context):
        return pb.ServerLiveResponse(live=True)

    async def ModelInfer(self, request, context):
        if request.model_name == "missing":
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown model 'missing' — 100% absent")
        await asyncio.sleep(0)  # a real await, as the batcher's
        output = pb.ModelInferResponse.InferOutputTensor(name="probs", datatype="FP32", shape=PROBS.shape)
        size = sum(len(raw) for raw in request.raw_input_contents)
        return pb.ModelInferResponse(model_name=request.model_name, id=f"{request.id}:{size}", outputs=[output],
                                     raw_output_contents=[PROBS.tobytes()])


def serve(**options) -> tuple[uvicorn.Server, threading.Thread, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(GrpcH2App(Servicer(), max_message_bytes=LIMIT), **{"http": GrpcH2Protocol, **options},
                            loop="none", lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    # off the main thread uvicorn leaves signal handlers alone
    thread = threading.Thread(target=lambda: uvloop.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    return server, thread, sock.getsockname()[1]


@contextlib.contextmanager
def served(**options):
    server, thread, port = serve(**options)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def address():
    with served() as port:
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def stub(address):
    with grpc.insecure_channel(address) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel)


def infer_input(rows: int = 1) -> triton_grpc.InferInput:
    tensor = triton_grpc.InferInput("image", [rows, 1, 28, 28], "FP32")
    tensor.set_data_from_numpy(np.zeros((rows, 1, 28, 28), np.float32))
    return tensor


def test_tritonclient_live_infer_and_abort(address):
    client = triton_grpc.InferenceServerClient(address)
    assert client.is_server_live()
    result = client.infer("mnist_mlp", [infer_input(64)], request_id="r1")  # 200 KB: past the 64 KiB stream window
    np.testing.assert_array_equal(result.as_numpy("probs"), PROBS)
    assert result.get_response().id == f"r1:{64 * 784 * 4}"
    with pytest.raises(InferenceServerException) as missing:
        client.infer("missing", [infer_input()])
    assert missing.value.status() == "StatusCode.NOT_FOUND"
    assert missing.value.message() == "unknown model 'missing' — 100% absent"  # percent-encoded on the wire
    with pytest.raises(InferenceServerException) as base:  # the generated base class: UNIMPLEMENTED
        client.is_server_ready()
    assert base.value.status() == "StatusCode.UNIMPLEMENTED"


def test_grpc_channel_codes(stub, address):
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=5).live
    cases = {
        "abort": (lambda: stub.ModelInfer(pb.ModelInferRequest(model_name="missing"), timeout=5), grpc.StatusCode.NOT_FOUND),
        "stream": (lambda: list(stub.ModelStreamInfer(iter([pb.ModelInferRequest()]), timeout=5)), grpc.StatusCode.UNIMPLEMENTED),
        "too large": (lambda: stub.ModelInfer(pb.ModelInferRequest(raw_input_contents=[bytes(LIMIT)]), timeout=5),
                      grpc.StatusCode.RESOURCE_EXHAUSTED),
    }
    with grpc.insecure_channel(address) as channel:
        raw = lambda path: channel.unary_unary(path, request_serializer=bytes, response_deserializer=bytes)  # noqa: E731
        cases["garbled"] = (lambda: raw("/inference.GRPCInferenceService/ModelInfer")(b"\xff\xff\xff", timeout=5),
                            grpc.StatusCode.INTERNAL)
        cases["unknown method"] = (lambda: raw("/other.Service/Method")(b"", timeout=5), grpc.StatusCode.UNIMPLEMENTED)
        for name, (call, code) in cases.items():
            with pytest.raises(grpc.RpcError) as failed:
                call()
            assert failed.value.code() == code, name
    # the server still answers on the same channel after each failure
    assert stub.ServerLive(pb.ServerLiveRequest(), timeout=5).live


def test_gzip_requests(stub):
    request = pb.ModelInferRequest(model_name="m", id="gz", raw_input_contents=[bytes(300_000)])
    assert stub.ModelInfer(request, timeout=5, compression=grpc.Compression.Gzip).id == "gz:300000"


def test_concurrent_calls_on_one_grpc_aio_channel(address):
    async def calls():
        async with grpc.aio.insecure_channel(address) as channel:
            aio_stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            return await asyncio.gather(*[aio_stub.ModelInfer(pb.ModelInferRequest(id=str(i), raw_input_contents=[bytes(i)]))
                                          for i in range(64)])
    assert [reply.id for reply in asyncio.run(calls())] == [f"{i}:{i}" for i in range(64)]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI for a self-signed pair")
def test_tls_with_alpn_h2(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost"], check=True, capture_output=True)
    with served(ssl_certfile=str(cert), ssl_keyfile=str(key)) as port:
        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        with grpc.secure_channel(f"localhost:{port}", credentials) as channel:
            assert service_pb2_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=5).live


class SmallBudgets(GrpcH2Protocol):
    stream_budget, reset_budget, retired = 40, 10, 0

    def retire(self) -> None:
        if not (self.draining or self.shutdown_requested):
            SmallBudgets.retired += 1
        super().retire()


def test_connections_retire_before_zttps_caps_without_failing_a_call():
    """zttp ends a connection after 4096 streams or 256 peer resets with GOAWAY ENHANCE_YOUR_CALM, and
    uvicorn then drops it with its calls in flight (UNAVAILABLE); GrpcH2Protocol retires it first. Here
    with budgets of 40 streams and 10 resets, so both trip many times on 16 busy calls in flight. (With
    one GOAWAY naming the last stream, the calls it refused were retried once by grpc, and a call
    refused again by the next retirement failed: once in a full suite's run.)"""
    async def calls(port):
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            aio_stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

            async def worker(w):
                ids = []
                for i in range(25):
                    ids.append((await aio_stub.ModelInfer(pb.ModelInferRequest(id=f"{w}.{i}"), timeout=10)).id)
                with contextlib.suppress(grpc.aio.AioRpcError):  # cancelled by the client: a RST_STREAM
                    await aio_stub.ModelInfer(pb.ModelInferRequest(id="x"), timeout=0.000_001)
                return ids
            return await asyncio.gather(*[worker(w) for w in range(16)])
    with served(http=SmallBudgets) as port:
        answered = asyncio.run(calls(port))
    assert answered == [[f"{w}.{i}:0" for i in range(25)] for w in range(16)]
    # A connection serves its budget and the calls in flight when its first GOAWAY lands (16 at most).
    assert SmallBudgets.retired >= 400 // (40 + 16)


def test_uvicorns_stock_http2_switch_serves_it_too():
    """http="zttp", http2=True: the same app, HTTP/2 sniffed per connection, HTTP/1.1 told it needs HTTP/2."""
    with served(http="zttp", http2=True) as port:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert service_pb2_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(), timeout=5).live
        request = urllib.request.Request(f"http://127.0.0.1:{port}/inference.GRPCInferenceService/ServerLive",
                                         data=b"", method="POST", headers={"content-type": "application/grpc"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 505


def test_non_grpc_requests_get_plain_http_answers():
    app = GrpcH2App(Servicer())

    def answer(scope: dict) -> int:
        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}
        asyncio.run(app({"type": "http", "method": "POST", "path": "/inference.GRPCInferenceService/ServerLive",
                         "extensions": {"http.response.trailers": {}}, **scope}, receive, send))
        return sent[0]["status"]
    assert answer({"headers": [(b"content-type", b"application/json")]}) == 415
    assert answer({"headers": [(b"content-type", b"application/grpc")], "extensions": {}}) == 505  # HTTP/1.1


def test_grpc_message_encoding():
    assert percent_encoded("plain text: ok") == b"plain text: ok"
    assert percent_encoded("50% ü\n") == b"50%25 %C3%BC%0A"


def test_the_bench_http2_client_counts_answers_statuses_and_classes_across_retired_connections():
    """bench.serve.grpc_load's client against a server that retires its connections every 40 streams:
    every call answered OK (refused streams sent again, not lost), each class checked against the
    expected one (the servicer always answers class 1), and an error status counted by its name."""
    from bench.serve.grpc_load import run_grpc_h2
    from bench.serve.load import grpc_requests

    rows = np.zeros((8, 1, 28, 28), np.float32)
    expected = np.array([1, 1, 1, 1, 1, 1, 0, 0])  # a quarter of the calls expect a class they do not get
    with served(http=SmallBudgets) as port:
        retired = SmallBudgets.retired
        result = run_grpc_h2("127.0.0.1", port, grpc_requests("m", rows, expected), clients=8, seconds=1.0, warmup_s=0.2).summary()
        missing = run_grpc_h2("127.0.0.1", port, grpc_requests("missing", rows, expected), clients=2, seconds=0.2, warmup_s=0.1)
    assert result["requests"] == result["ok"] == result["statuses"]["OK"] > 0 and set(result["statuses"]) == {"OK"}
    assert SmallBudgets.retired > retired  # the load crossed at least one retirement (40 streams)
    # each client cycles through the 8 rows in order, so any run of its calls is 1/4 wrong within 2 calls
    assert abs(result["wrong"] - result["ok"] / 4) <= 2 * 8
    assert set(missing.statuses) == {"NOT_FOUND"} and missing.first_error == "NOT_FOUND" and not missing.latencies_ms
