"""A closed-loop load generator for Open Inference Protocol servers: C concurrent clients, each sending
its next request when the last answer arrives, for a fixed time; every answer checked.

    requests = infer_requests("127.0.0.1", "/v2/models/mnist_mlp/infer", inputs, expected, "binary")  # before the clock
    result = run_http("127.0.0.1", 8000, requests, clients=64, seconds=5)
    result = run_grpc("127.0.0.1:8001", grpc_requests("mnist_mlp", inputs, expected), clients=64, seconds=5)

Why our own client and not wrk: every answer must be checked (status, and the class against the
fp32 model's), 503s counted apart from errors, and gRPC loaded the same way; wrk checks nothing and
does not speak gRPC. The HTTP client is raw HTTP/1.1 keep-alive on uvloop (tens of µs of CPU a
request); its CPU time is measured and reported beside the server's, so a reader sees whether the
generator, not the server, was the limit. gRPC here is grpc.aio, what tritonclient.grpc.aio users
run; bench.serve.grpc_load sends the same calls from an HTTP/2 client at a third of its CPU a call.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import orjson
import uvloop

OK, BUSY = 200, 503


@dataclass(frozen=True)
class Request:
    wire: bytes  # for HTTP: the whole request (request line, headers, body); for gRPC: unused
    expected: int  # the class the fp32 model gives this input
    message: object = None  # for gRPC: a ModelInferRequest


@dataclass
class LoadResult:
    clients: int
    seconds: float  # wall time of the measured window
    latencies_ms: list[float] = field(default_factory=list)  # answered 200, right or wrong
    statuses: dict[str, int] = field(default_factory=dict)  # status (HTTP code or gRPC code name) -> count
    wrong: int = 0  # answered 200 with another class than the fp32 model's
    client_cpu_s: float = 0.0  # this process's CPU time in the window
    server_cpu_s: float = 0.0  # the server's, from the probe given to run_http / run_grpc
    first_error: str = ""

    def summary(self) -> dict:
        ok = self.statuses.get(str(OK), 0) + self.statuses.get("OK", 0)
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.array([np.nan])
        total = sum(self.statuses.values())
        return {"clients": self.clients, "seconds": round(self.seconds, 3), "requests": total, "ok": ok,
                "req_per_s": ok / self.seconds, "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                "statuses": dict(self.statuses), "wrong": self.wrong, "client_cpu_s": self.client_cpu_s,
                "client_cpu_per_request_ms": 1e3 * self.client_cpu_s / max(total, 1), "server_cpu_s": self.server_cpu_s,
                "server_cpu_per_request_ms": 1e3 * self.server_cpu_s / max(total, 1), "first_error": self.first_error}


def infer_requests(host: str, path: str, inputs: np.ndarray, expected: np.ndarray, encoding: str) -> list[Request]:
    """One batch-1 request per input row: "binary" (what tritonclient.http sends by default: binary in,
    binary out, no Content-Type) or "json" (`data` in, JSON out, Content-Type application/json)."""
    requests = []
    for row, label in zip(inputs, expected):
        tensor = {"name": "image", "datatype": "FP32", "shape": [1, *row.shape]}
        headers = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        if encoding == "binary":
            raw = row.astype("<f4").tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            header = orjson.dumps({"inputs": [tensor], "outputs": [{"name": "probs", "parameters": {"binary_data": True}}]})
            body = header + raw
            headers += f"Inference-Header-Content-Length: {len(header)}\r\n"  # and no Content-Type, as tritonclient.http
        else:
            tensor["data"] = row.ravel().tolist()
            body = orjson.dumps({"inputs": [tensor]})
            headers += "Content-Type: application/json\r\n"
        requests.append(Request((headers + f"Content-Length: {len(body)}\r\n\r\n").encode() + body, int(label)))
    return requests


def answer_class(body: bytes, header_length: int | None) -> int:
    """The argmax of the response's one output, binary or JSON (flat or nested `data`)."""
    if header_length is not None and header_length < len(body):
        return int(np.frombuffer(body[header_length:], dtype="<f4").argmax())
    return int(np.argmax(orjson.loads(body)["outputs"][0]["data"]))


async def _http_client(host: str, port: int, requests: list[Request], start: int, state: dict, result: LoadResult,
                       tls: ssl.SSLContext | None = None) -> None:
    reader, writer = await asyncio.open_connection(host, port, ssl=tls)
    i = start
    try:
        while not state["stop"]:
            request = requests[i % len(requests)]
            i += 1
            sent = time.perf_counter()
            writer.write(request.wire)
            head = await reader.readuntil(b"\r\n\r\n")
            status, length, header_length = parse_head(head)
            body = await reader.readexactly(length) if length is not None else await read_chunked(reader)
            if not state["measuring"]:
                continue
            result.statuses[str(status)] = result.statuses.get(str(status), 0) + 1
            if status == OK:
                result.latencies_ms.append(1e3 * (time.perf_counter() - sent))
                result.wrong += answer_class(body, header_length) != request.expected
            elif not result.first_error:
                result.first_error = f"{status}: {body[:300].decode(errors='replace')}"
    finally:
        writer.close()


async def read_chunked(reader: asyncio.StreamReader) -> bytes:
    """A body sent with Transfer-Encoding: chunked (KServe's server answers so)."""
    chunks = []
    while size := int((await reader.readuntil(b"\r\n")).split(b";")[0], 16):
        chunks.append((await reader.readexactly(size + 2))[:-2])
    await reader.readuntil(b"\r\n")  # the empty trailer
    return b"".join(chunks)


def parse_head(head: bytes) -> tuple[int, int | None, int | None]:
    """(status, Content-Length or None for a chunked body, Inference-Header-Content-Length)."""
    lines = head.split(b"\r\n")
    status, length, header_length = int(lines[0].split(b" ", 2)[1]), None, None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"inference-header-content-length":
            header_length = int(value)
    return status, length, header_length


CpuProbe = Callable[[], float]  # the server's CPU seconds so far


async def closed_loop(clients: list, state: dict, result: LoadResult, warmup_s: float, seconds: float, probe: CpuProbe) -> LoadResult:
    """Run the client coroutines: `warmup_s` unmeasured, then `seconds` in which they fill `result`
    (state["measuring"]), then stop them (state["stop"]) and wait for their last answers."""
    tasks = [asyncio.ensure_future(c) for c in clients]
    await asyncio.sleep(warmup_s)
    server_cpu = probe()  # reading /proc costs this process CPU: outside the client's own window
    state["measuring"], cpu, started = True, time.process_time(), time.perf_counter()
    await asyncio.sleep(seconds)
    state["measuring"], state["stop"] = False, True
    result.seconds, result.client_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    result.server_cpu_s = probe() - server_cpu
    done, pending = await asyncio.wait(tasks, timeout=30)
    for task in done:
        if task.exception() is not None:
            raise task.exception()
    if pending:
        raise TimeoutError(f"{len(pending)} clients got no answer within 30 s of the end")
    return result


def run_http(host: str, port: int, requests: list[Request], clients: int, seconds: float, warmup_s: float = 1.0,
             probe: CpuProbe = lambda: 0.0, tls: ssl.SSLContext | None = None) -> LoadResult:
    """`clients` keep-alive connections (over TLS with `tls`, a client context trusting the server)."""
    async def main() -> LoadResult:
        state, result = {"stop": False, "measuring": False}, LoadResult(clients, seconds)
        step = max(len(requests) // clients, 1)
        return await closed_loop([_http_client(host, port, requests, c * step, state, result, tls) for c in range(clients)],
                                 state, result, warmup_s, seconds, probe)
    return uvloop.run(main())


async def _grpc_client(stub, requests: list[Request], start: int, state: dict, result: LoadResult) -> None:
    import grpc

    i = start
    while not state["stop"]:
        request = requests[i % len(requests)]
        i += 1
        sent = time.perf_counter()
        try:
            response, code = await stub.ModelInfer(request.message), "OK"
        except grpc.aio.AioRpcError as err:
            response, code = None, err.code().name
            if not result.first_error:
                result.first_error = f"{code}: {err.details()}"
        if not state["measuring"]:
            continue
        result.statuses[code] = result.statuses.get(code, 0) + 1
        if response is not None:
            result.latencies_ms.append(1e3 * (time.perf_counter() - sent))
            result.wrong += int(np.frombuffer(response.raw_output_contents[0], dtype="<f4").argmax()) != request.expected


def grpc_requests(model: str, inputs: np.ndarray, expected: np.ndarray) -> list[Request]:
    from tritonclient.grpc import service_pb2 as pb

    requests = []
    for row, label in zip(inputs, expected):
        tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="FP32", shape=[1, *row.shape])
        message = pb.ModelInferRequest(model_name=model, inputs=[tensor], raw_input_contents=[row.astype("<f4").tobytes()])
        requests.append(Request(b"", int(label), message))
    return requests


def run_grpc(address: str, requests: list[Request], clients: int, seconds: float, warmup_s: float = 1.0,
             probe: CpuProbe = lambda: 0.0) -> LoadResult:
    """`clients` concurrent calls over one channel (HTTP/2 multiplexes them, as tritonclient.grpc does)."""
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    async def main() -> LoadResult:
        state, result = {"stop": False, "measuring": False}, LoadResult(clients, seconds)
        async with grpc.aio.insecure_channel(address) as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            step = max(len(requests) // clients, 1)
            return await closed_loop([_grpc_client(stub, requests, c * step, state, result) for c in range(clients)],
                                     state, result, warmup_s, seconds, probe)
    return asyncio.run(main())
