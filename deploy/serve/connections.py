"""A bound on the HTTP side's open connections (--max-connections), on uvicorn's httptools protocol;
torch-free.

uvicorn's own `limit_concurrency` answers requests with 503 past its limit but keeps every
connection open, and a connection that never sends a request is never timed out: stalled clients
could hold sockets and buffers without bound. Here a connection past the bound gets a 503 in the
protocol's shape and is closed at once, and a new connection that sends nothing is closed after the
keep-alive timeout, as uvicorn closes an idle one after a response. A body that stalls is the body
deadline's (deploy.serve.http_app, 408). At shutdown an idle TLS connection is aborted rather than
closed: a TLS close waits for the client's close_notify, which an idle client never sends until it
reads again, and the drain would wait out the event loop's 30 s TLS shutdown timeout for each.
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_BODY = orjson.dumps({"error": "server busy: too many open connections (--max-connections); retry later"})
REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
           b"content-length: %d\r\n\r\n%s" % (len(_BODY), _BODY))


def bounded_protocol(max_connections: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol class that keeps at most `max_connections` connections open."""

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
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
