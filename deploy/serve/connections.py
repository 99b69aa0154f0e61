"""uvicorn's httptools protocol as mlp-serve runs it: a bound on the HTTP side's open connections
(--max-connections), and each small response written in one system call; torch-free.

uvicorn's own `limit_concurrency` answers requests with 503 past its limit but keeps every
connection open, and a connection that never sends a request is never timed out: stalled clients
could hold sockets and buffers without bound. Here a connection past the bound gets a 503 in the
protocol's shape and is closed at once, and a new connection that sends nothing is closed after the
keep-alive timeout, as uvicorn closes an idle one after a response. A body that stalls is the body
deadline's (deploy.serve.http_app, 408). At shutdown an idle TLS connection is aborted rather than
closed: a TLS close waits for the client's close_notify, which an idle client never sends until it
reads again, and the drain would wait out the event loop's 30 s TLS shutdown timeout for each.

uvicorn writes a response's head and its body in two `transport.write` calls, and uvloop sends each
at once: two `write` system calls and two TCP segments, and the client wakes twice, for an answer of
a few hundred bytes. `OneWrite` holds a write until the next one and sends the two together (as
aiohttp does for small responses, aio-libs/aiohttp#10991); a write nothing follows is sent at the
end of the event loop's pass. Side by side at 64 clients, mlp-serve served 1.04-1.06x the requests
a second with 2 µs less server CPU a request, and the stack answering a constant 1.14-1.16x
(docs/deploy.md).
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_BODY = orjson.dumps({"error": "server busy: too many open connections (--max-connections); retry later"})
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
           b"content-length: %d\r\n\r\n%s" % (len(_BODY), _BODY))
JOINED_BYTES = 64 << 10  # a held write and the next are sent together up to this size; a larger body is not copied


class OneWrite:
    """A transport that sends a write together with the next one (or at the end of the loop's pass, if
    none follows); everything else is the transport's own."""

    __slots__ = ("transport", "_loop", "_held")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport, self._loop, self._held = transport, loop, None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = data
            self._loop.call_soon(self.flush)
        elif len(held) + len(data) <= JOINED_BYTES:
            self._held = None
            self.transport.write(held + data)
        else:
            self._held = None
            self.transport.write(held)
            self.transport.write(data)

    def flush(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._held = None
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:  # get_extra_info, is_closing, pause_reading, ...: the transport's
        return getattr(self.transport, name)


def bounded_protocol(max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class that keeps at most `max_connections` connections open and
    writes through `OneWrite`."""

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(OneWrite(transport, self.loop))
            if len(self.connections) > max_connections:
                transport.write(REFUSAL)
                transport.close()
                return
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

        def shutdown(self) -> None:
            idle = self.cycle is None or self.cycle.response_complete
            if idle and self.scheme == "https":
                self.transport.abort()
            else:
                super().shutdown()

    return BoundedHttpToolsProtocol
