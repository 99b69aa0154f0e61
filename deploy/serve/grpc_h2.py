"""gRPC over uvicorn's own HTTP/2 (zttp): an ASGI app speaking the gRPC wire protocol to a grpc.aio-style
servicer, so calls run on uvicorn's event loop with no grpcio server. A prototype; unary methods only.

Usage (uvicorn >= 0.54 and zttp >= 0.0.34, for HTTP/2 response trailers; on uvloop, which sets TCP_NODELAY):
    app = GrpcH2App(InferenceService(service))               # any service_pb2_grpc servicer
    config = uvicorn.Config(app, http=GrpcH2Protocol, loop="none", lifespan="off")
    await uvicorn.Server(config).serve(sockets=[sock])       # a port of its own: HTTP/2 only

GrpcH2Protocol is what uvicorn's http="zttp", http2=True runs for an HTTP/2 connection, for HTTP/2
alone: h2c prior knowledge in cleartext (what gRPC clients without TLS send), ALPN h2 with
ssl_certfile/ssl_keyfile. It exists because zttp 0.0.35 ends a connection with GOAWAY ENHANCE_YOUR_CALM
once the client has opened 4096 streams on it or reset 256 (rapid-reset defences, not settable), and
uvicorn then drops it with every call in flight (UNAVAILABLE). It says GOAWAY NO_ERROR first, twice
(RFC 9113's graceful shutdown), and drains.

Wire format: POST /<package.Service>/<Method>, content-type application/grpc, a body of one message
behind a compressed flag and a 4-byte big-endian length; the answer is 200, the reply likewise
prefixed, then trailers grpc-status and grpc-message (percent-encoded). Streaming methods answer
UNIMPLEMENTED; gzip requests are accepted, replies go uncompressed; grpc-timeout is not enforced.
"""

from __future__ import annotations

import inspect
import logging
import zlib

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import ServiceDescriptor
from tritonclient.grpc import service_pb2
from uvicorn.protocols.http.zttp_h2_impl import ZttpH2Protocol

log = logging.getLogger("mlp-serve")
TRITON_SERVICE = service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"]
REPLY_HEADERS = [(b"content-type", b"application/grpc")]
OK, UNIMPLEMENTED, INTERNAL, RESOURCE_EXHAUSTED = (grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED,
                                                   grpc.StatusCode.INTERNAL, grpc.StatusCode.RESOURCE_EXHAUSTED)


class GrpcH2Protocol(ZttpH2Protocol):
    """uvicorn's HTTP/2 connection, retired gracefully before zttp's lifetime caps (4096 streams opened,
    256 reset by the peer) turn into a GOAWAY ENHANCE_YOUR_CALM and a dropped connection. Overrides
    uvicorn internals (handle_request, handle_rst_stream, _close_connection): pin uvicorn."""

    alpn_protocols = ["h2"]
    stream_budget = 4096 - 2 * 128  # headroom for what a client opens (128 at once) before our GOAWAY lands
    reset_budget = 256 - 2 * 32
    drain_s = 0.5  # between the two GOAWAYs: at least a round trip, for streams sent before the first landed
    linger_s = 5.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.streams_opened = self.resets = self.last_stream_id = 0
        self.draining = self.retiring = False

    def handle_request(self, event) -> None:
        if self.shutdown_requested:  # after the GOAWAY naming the last stream served, or the server's shutdown
            self.conn.stream(event.stream_id).reset(0x7)  # REFUSED_STREAM: "not processed", safe to retry
            return
        self.streams_opened += 1
        self.last_stream_id = event.stream_id
        super().handle_request(event)
        if self.streams_opened >= self.stream_budget:
            self.retire()

    def handle_rst_stream(self, event) -> None:
        self.resets += 1
        super().handle_rst_stream(event)
        if self.resets >= self.reset_budget:
            self.retire()

    def retire(self) -> None:
        """RFC 9113 section 6.8's graceful shutdown: GOAWAY NO_ERROR naming the largest stream id now (the
        client opens no more streams here and reconnects, while every stream it already sent is
        served), then, drain_s later, the GOAWAY naming the last stream served. A single GOAWAY naming
        the last stream would refuse the streams still on their way, and a gRPC client retries a call
        refused so only once: a second retirement during the retry failed it (UNAVAILABLE)."""
        if not (self.draining or self.shutdown_requested or self.transport.is_closing()):
            self.draining = True
            self.conn.close(0, (1 << 31) - 1)
            self.flush()
            self.loop.call_later(self.drain_s, self.stop_serving)

    def stop_serving(self) -> None:
        """The second GOAWAY; the streams in flight finish, then the client closes the connection."""
        if not (self.shutdown_requested or self.transport.is_closing()):
            self.conn.close(0, self.last_stream_id)
            self.flush()
            self.retiring = True
            ZttpH2Protocol.shutdown(self)  # refuse new streams; _close_connection once the last one ends

    def _close_connection(self) -> None:
        # uvicorn's closes the socket as the last stream ends, while the client may still be sending
        # (streams that raced the GOAWAY): closing on unread bytes sends a TCP RST, which can destroy
        # replies the client has not read yet (seen: UNAVAILABLE "Connection reset by peer"). A gRPC
        # client closes a connection it got GOAWAY on once its streams end; close later if it doesn't.
        if self.retiring:
            self.retiring = False
            self.loop.call_later(self.linger_s, self.transport.close)
        elif not self.transport.is_closing():
            super()._close_connection()

    def shutdown(self) -> None:  # the server is stopping: no lingering
        self.retiring = False
        super().shutdown()


class GrpcAbort(Exception):
    """What the context's abort() raises: it unwinds the servicer method, and the app answers its status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class Context:
    """The part of grpc.aio.ServicerContext that servicers use here: abort, set_code/set_details (what the
    generated base class calls before raising NotImplementedError) and the request's metadata."""

    __slots__ = ("_headers", "code", "details")

    def __init__(self, headers: list[tuple[bytes, bytes]]) -> None:
        self._headers, self.code, self.details = headers, None, ""

    async def abort(self, code: grpc.StatusCode, details: str = "", trailing_metadata=()) -> None:
        raise GrpcAbort(code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        # Built on demand: most calls never ask, and pseudo-headers and HTTP/2's own are not metadata.
        return tuple((k.decode(), v.decode("latin-1")) for k, v in self._headers
                     if not k.startswith(b":") and k not in (b"te", b"content-type", b"user-agent"))


def percent_encoded(details: str) -> bytes:
    """grpc-message's encoding: UTF-8, then every byte outside printable ASCII, and '%', as %XX."""
    return b"".join(bytes((b,)) if 0x20 <= b <= 0x7E and b != 0x25 else b"%%%02X" % b for b in details.encode())


class GrpcH2App:
    """ASGI app serving the unary methods of `service` (Triton's GRPCInferenceService by default) from
    `servicer`, whose methods are `async def Method(self, request, context)` as for grpc.aio."""

    def __init__(self, servicer, service: ServiceDescriptor = TRITON_SERVICE, max_message_bytes: int = 64 << 20) -> None:
        self.max_message_bytes = max_message_bytes
        # path -> (request class, bound method); None for streaming methods. Resolved once, not per call.
        self.methods: dict[str, tuple | None] = {}
        for method in service.methods:
            streaming = method.client_streaming or method.server_streaming
            handler = getattr(servicer, method.name, None)
            self.methods[f"/{service.full_name}/{method.name}"] = None if streaming or handler is None else (
                message_factory.GetMessageClass(method.input_type), handler)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # lifespan and websocket: nothing to do here
            return
        if "http.response.trailers" not in scope.get("extensions", {}):  # HTTP/1.1, or a server without them
            return await plain(send, 505, b"gRPC needs HTTP/2\n")
        headers = scope["headers"]
        content_type = next((v for k, v in headers if k == b"content-type"), b"")
        if scope["method"] != "POST" or not content_type.startswith(b"application/grpc"):
            return await plain(send, 415, b"gRPC answers POST with content-type application/grpc\n")
        code, details, reply = await self.call(scope["path"], headers, receive)
        await send({"type": "http.response.start", "status": 200, "headers": REPLY_HEADERS, "trailers": True})
        # A reply and an error alike end with trailers: gRPC allows zero messages before them, which is
        # simpler than a Trailers-Only HEADERS frame (that one ASGI cannot ask for).
        await send({"type": "http.response.body", "body": reply, "more_body": False})
        trailers = [(b"grpc-status", b"%d" % code.value[0])]
        if details:
            trailers.append((b"grpc-message", percent_encoded(details)))
        await send({"type": "http.response.trailers", "headers": trailers, "more_trailers": False})

    async def call(self, path: str, headers, receive) -> tuple[grpc.StatusCode, str, bytes]:
        """(status, details, prefixed reply or b"") of one call."""
        if path not in self.methods:
            return UNIMPLEMENTED, f"unknown method {path}", b""
        entry = self.methods[path]
        if entry is None:
            return UNIMPLEMENTED, f"{path}: streaming methods are not served over this transport", b""
        body = await read_body(receive, self.max_message_bytes + 5)
        if body is None:
            return RESOURCE_EXHAUSTED, f"request larger than {self.max_message_bytes} bytes", b""
        request_class, handler = entry
        try:
            payload = self.message(body, headers)
            request = request_class.FromString(payload)
        except GrpcAbort as err:
            return err.code, err.details, b""
        except Exception as err:  # protobuf's DecodeError, and anything else a garbled body raises
            return INTERNAL, f"cannot parse the request: {type(err).__name__}: {err}", b""
        context = Context(headers)
        try:
            reply = handler(request, context)
            if inspect.isawaitable(reply):
                reply = await reply
        except GrpcAbort as err:
            return err.code, err.details, b""
        except NotImplementedError:  # the generated base class's answer, after set_code(UNIMPLEMENTED)
            return UNIMPLEMENTED, context.details or "Method not implemented!", b""
        except Exception as err:  # what grpc.aio does too: log it, answer UNKNOWN with the exception
            log.exception("gRPC %s failed", path)
            return grpc.StatusCode.UNKNOWN, f"Unexpected {type(err).__name__}: {err}", b""
        if context.code not in (None, OK):  # set_code without abort: the status, no message
            return context.code, context.details, b""
        data = reply.SerializeToString()
        return OK, "", b"\x00" + len(data).to_bytes(4, "big") + data

    def message(self, body: bytes, headers) -> bytes:
        """The one message of a unary request's body, decompressed; GrpcAbort if it is not one."""
        if len(body) < 5 or int.from_bytes(body[1:5], "big") != len(body) - 5:
            raise GrpcAbort(INTERNAL, f"a unary request holds one length-prefixed message; got {len(body)} bytes")
        if body[0] == 0:
            return body[5:]
        encoding = next((v for k, v in headers if k == b"grpc-encoding"), b"identity")
        if body[0] != 1 or encoding != b"gzip":
            raise GrpcAbort(UNIMPLEMENTED, f"compression {encoding.decode('latin-1')!r} is not supported; gzip is")
        inflate = zlib.decompressobj(wbits=31)  # gzip framing; bounded, so a small bomb cannot blow up memory
        payload = inflate.decompress(body[5:], self.max_message_bytes + 1)
        if len(payload) > self.max_message_bytes or inflate.unconsumed_tail:
            raise GrpcAbort(RESOURCE_EXHAUSTED, f"request larger than {self.max_message_bytes} bytes once inflated")
        return payload


async def read_body(receive, limit: int) -> bytes | None:
    """The whole request body (uvicorn hands it over in DATA-frame pieces), or None past `limit` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def plain(send, status: int, text: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": text})
