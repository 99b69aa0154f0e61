"""A gRPC load generator whose own cost stays out of the way: the same closed loop as bench.serve.load,
on zttp's HTTP/2 client (native framing, HPACK and flow control) over uvloop, every answer checked.

    requests = grpc_requests("mnist_mlp", inputs, expected)          # bench.serve.load, before the clock
    result = run_grpc_h2("127.0.0.1", 8001, requests, clients=64, seconds=5)

Why a second gRPC client: grpc.aio's costs about 0.30 ms of CPU a call on a 2-core AMD EPYC VM
(family 23 model 1), five times the raw HTTP/1.1 client's 0.06 ms, and the load generator shares the
cores with the server, so a gRPC figure measured with it is mostly the generator's. This one spends
about 0.10 ms a call, so gRPC and HTTP are loaded at a comparable cost; `make bench-serve` reports both.

The wire is gRPC's (PROTOCOL-HTTP2.md): POST /inference.GRPCInferenceService/ModelInfer with
content-type application/grpc and te: trailers, the message behind a compressed flag and a 4-byte
big-endian length; the answer's status is grpc-status in the trailers (or in the headers of a
trailers-only answer). As gRPC clients do, all calls share one connection, and a connection the
server retires with GOAWAY is left to drain while new calls open a fresh one; a stream the server
refused (RST_STREAM REFUSED_STREAM: "not processed") is sent again, not counted as an answer.
HTTP/2 flow control caps the request bytes in flight on a connection (64 KiB until the server grants
more; a request is 3.2 KB), and zttp parks what does not fit and sends it as credit comes back, not
oldest first: with 64 calls in flight some waited a whole connection's life (p99 0.34-0.47 s against
the constant-answer floor). So a call whose stream cannot be sent at once waits in a FIFO of our own
and opens its stream when nothing is parked: calls go out in the order they were made (p99 10 ms).
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections import deque

import grpc
import numpy as np
import uvloop
import zttp
from tritonclient.grpc import service_pb2 as pb

from bench.serve.load import CpuProbe, LoadResult, Request, closed_loop

INFER_PATH = b"/inference.GRPCInferenceService/ModelInfer"
REFUSED_STREAM = 0x7  # HTTP/2 error code: the server did not process the stream, safe to retry
STATUS_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}  # 5 -> "NOT_FOUND", as grpc.aio names them
RETRY = "retry"  # what a refused stream's future resolves to


def framed(message: bytes) -> bytes:
    """gRPC's length-prefixed message: not compressed (0), then the length, big-endian."""
    return b"\0" + struct.pack(">I", len(message)) + message


class _Connection(asyncio.Protocol):
    """One HTTP/2 connection; `call` opens a stream and returns a future of (grpc-status name, message)."""

    def __init__(self, authority: bytes) -> None:
        self.h2 = zttp.Connection(zttp.CLIENT, zttp.HTTP2)
        self.headers = [(b"host", authority), (b"content-type", b"application/grpc"), (b"te", b"trailers")]
        self.streams: dict[int, list] = {}  # stream id -> [future, status from the headers, body chunks]
        self.waiting: deque[tuple[bytes, asyncio.Future]] = deque()  # calls not yet sent: flow control (above)
        self.transport: asyncio.Transport | None = None
        self.retiring = False  # the server said GOAWAY: no new streams here

    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.h2.initiate_connection()
        transport.write(self.h2.data_to_send())

    def usable(self) -> bool:
        return not self.retiring and self.transport is not None and not self.transport.is_closing()

    def call(self, body: bytes) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        if self.waiting or self.h2.has_pending_send():
            self.waiting.append((body, future))
        else:
            self._open(body, future)
            self.transport.write(self.h2.data_to_send())
        return future

    def _open(self, body: bytes, future: asyncio.Future) -> None:
        stream = self.h2.send_request(b"POST", INFER_PATH, b"2", self.headers)
        stream.send_data(body)
        stream.end_message()
        self.streams[stream.stream_id] = [future, None, []]

    def data_received(self, data: bytes) -> None:
        self.h2.receive_data(data)
        while (event := self.h2.next_event()) is not zttp.NEED_DATA and event is not zttp.CONNECTION_CLOSED:
            kind = type(event)
            if kind is zttp.Data:
                self.streams[event.stream_id][2].append(event.data)
            elif kind is zttp.Response:
                self.streams[event.stream_id][1] = _status(event.headers) if event.status_code == 200 else f"HTTP {event.status_code}"
            elif kind is zttp.EndOfMessage:
                future, status, chunks = self.streams.pop(event.stream_id)
                future.set_result((_status(event.trailers) or status or "no grpc-status", b"".join(chunks)))
            elif kind is zttp.RstStream:
                future = self.streams.pop(event.stream_id)[0]
                future.set_result((RETRY if event.error_code == REFUSED_STREAM else f"RST_STREAM {event.error_code}", b""))
            elif kind is zttp.GoAway:
                self.retiring = True
        while self.waiting and (self.retiring or not self.h2.has_pending_send()):
            body, future = self.waiting.popleft()
            if self.retiring:  # never sent: it goes on the next connection
                future.set_result((RETRY, b""))
            else:
                self._open(body, future)
        if pending := self.h2.data_to_send():  # parked bytes the new credit lets out, new streams, acknowledgements
            self.transport.write(pending)

    def connection_lost(self, exc: Exception | None) -> None:
        for future, _, _ in self.streams.values():
            if not future.done():
                future.set_result(("UNAVAILABLE", b""))  # what a gRPC client reports for a dropped connection
        for _, future in self.waiting:
            future.set_result((RETRY, b""))  # never sent
        self.streams.clear()
        self.waiting.clear()


def _status(fields) -> str | None:
    for name, value in fields:
        if name == b"grpc-status":
            return STATUS_NAMES.get(int(value), f"status {int(value)}")
    return None


class _Channel:
    """What the clients share: the current connection, replaced when the server retires it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port, self.current, self._lock = host, port, None, asyncio.Lock()

    async def connection(self) -> _Connection:
        async with self._lock:  # one reconnect, however many clients notice at once
            if self.current is None or not self.current.usable():
                authority = f"{self.host}:{self.port}".encode()
                _, self.current = await asyncio.get_running_loop().create_connection(lambda: _Connection(authority), self.host, self.port)
            return self.current


async def _client(channel: _Channel, bodies: list[bytes], requests: list[Request], start: int, state: dict, result: LoadResult) -> None:
    i = start
    while not state["stop"]:
        index = i % len(requests)
        i += 1
        sent = time.perf_counter()
        status = RETRY
        while status == RETRY:
            connection = channel.current if channel.current is not None and channel.current.usable() else await channel.connection()
            status, body = await connection.call(bodies[index])
        if not state["measuring"]:
            continue
        result.statuses[status] = result.statuses.get(status, 0) + 1
        if status == "OK":
            result.latencies_ms.append(1e3 * (time.perf_counter() - sent))
            answer = pb.ModelInferResponse.FromString(body[5:])
            result.wrong += int(np.frombuffer(answer.raw_output_contents[0], dtype="<f4").argmax()) != requests[index].expected
        elif not result.first_error:
            result.first_error = status


def run_grpc_h2(host: str, port: int, requests: list[Request], clients: int, seconds: float, warmup_s: float = 1.0,
                probe: CpuProbe = lambda: 0.0) -> LoadResult:
    """`clients` concurrent calls over one HTTP/2 connection at a time (as one gRPC channel)."""
    bodies = [framed(r.message.SerializeToString()) for r in requests]  # encoded before the clock

    async def main() -> LoadResult:
        state, result, channel = {"stop": False, "measuring": False}, LoadResult(clients, seconds), _Channel(host, port)
        step = max(len(requests) // clients, 1)
        try:
            return await closed_loop([_client(channel, bodies, requests, c * step, state, result) for c in range(clients)],
                                state, result, warmup_s, seconds, probe)
        finally:
            if channel.current is not None:
                channel.current.transport.close()
    return uvloop.run(main())
