"""The Open Inference Protocol's HTTP/REST side as a bare ASGI app (run by uvicorn with uvloop and
httptools), torch-free.

    GET  /v2/health/live, /v2/health/ready, /v2        server liveness, readiness, metadata
    GET  /v2/models/{m}[/versions/{v}]                 model metadata; .../ready: model readiness
    POST /v2/models/{m}[/versions/{v}]/infer           JSON `data` or binary tensor data (deploy.serve.protocol)
    GET  /v2/models[/{m}[/versions/{v}]]/stats         Triton's statistics extension
    GET  /metrics                                      Prometheus (deploy.serve.metrics)
    GET  /, /<file>                                    the bundle's browser page, when `make web` built one (deploy.serve.pages)
Errors are `{"error": "..."}`: 400 bad request (and a readiness probe's "not ready"), 404 unknown
model, version or route, 405 wrong method, 408 a body not all there `body_timeout_s` after it began, 413 too
large, 503 queue full, 500 only for a fault of the server itself (logged with its traceback).

Why no web framework: the protocol has nine fixed routes, and a framework's per-request machinery
(request objects, routing tables, middleware tasks) cost more CPU than the model's own batch-1 call.
Each request here is one regex match, one body read and one await on the batcher; everything in the
event loop, no thread hop. Routes (`ROUTES`) and their handlers are the whole app.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

import orjson

from deploy.serve.metrics import CONTENT_TYPE
from deploy.serve.pages import PageFile
from deploy.serve.protocol import HEADER_LENGTH, ProtocolError, encode_response, parse_infer
from deploy.serve.service import ModelService

JSON = [(b"content-type", b"application/json")]
MODEL_PATH = re.compile(r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/(?P<action>ready|infer|stats))?")
HEADER_LENGTH_KEY = HEADER_LENGTH.lower().encode()
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, body, headers
log = logging.getLogger("mlp-serve")


class ClientGone(Exception):
    """The client closed the connection before sending its whole body: nobody to answer."""


class BodyDeadlines:
    """The requests reading their body and when each began; `watch()` (a task the server runs) answers
    those stalled past `timeout_s` with 408 by cancelling their read. One sweep a second instead of a
    timer per request: asyncio.timeout() cost 5 µs a request, 5% of a request's CPU here."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._reading: dict[asyncio.Task, float] = {}  # task -> loop time its body read began
        self._expired: set[asyncio.Task] = set()

    def begin(self) -> asyncio.Task:
        task = asyncio.current_task()
        self._reading[task] = time.monotonic()
        return task

    def end(self, task: asyncio.Task) -> None:
        self._reading.pop(task, None)

    def expired(self, task: asyncio.Task) -> bool:
        """True (once) if the watcher cancelled this task's read."""
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()  # the request goes on, to answer 408
            return True
        return False

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.timeout_s / 2))
            now = time.monotonic()
            for task, began in list(self._reading.items()):
                if now - began > self.timeout_s:
                    self._reading.pop(task)
                    self._expired.add(task)
                    task.cancel()


class HttpApp:
    def __init__(self, service: ModelService, body_timeout_s: float = 15.0, pages: dict[str, PageFile] | None = None) -> None:
        self.service, self.bodies = service, BodyDeadlines(body_timeout_s)
        self._metadata = orjson.dumps(service.model_metadata())
        # path or action -> (the method it allows, handler(scope, receive, model, version) -> Answer)
        self.fixed: dict[str, tuple[str, Callable[..., Awaitable[Answer]]]] = {
            "/v2/health/live": ("GET", _static(b'{"live":true}')),
            "/v2/health/ready": ("GET", self.server_ready),
            "/v2": ("GET", _static(orjson.dumps(service.server_metadata()))),
            "/v2/models/stats": ("GET", self.stats),
            "/metrics": ("GET", self.prometheus),
        }
        self.fixed.update({path: ("GET", _page(page)) for path, page in (pages or {}).items()})
        self.actions = {None: ("GET", self.model_metadata), "ready": ("GET", self.model_ready),
                        "infer": ("POST", self.infer), "stats": ("GET", self.stats)}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":  # lifespan events: the server starts and stops the service itself
            return
        started, method = time.perf_counter(), scope["method"]
        route = "unmatched"
        try:
            route, handler, model, version = self._route(scope["path"], method)
            status, body, headers = await handler(scope, receive, model, version)
        except ProtocolError as err:
            status, body, headers = err.status, orjson.dumps({"error": str(err)}), JSON
        except ClientGone:
            return
        except Exception as err:  # a fault of the server, not of the request: logged loudly, answered in the protocol's shape
            log.exception("%s %s failed", method, scope["path"])
            status, body, headers = 500, orjson.dumps({"error": f"internal error: {type(err).__name__}: {err}"}), JSON
        if status >= 400 and route.endswith("/infer"):
            self.service.metrics.failure(status)
        # After a 408 the rest of the body may never come: close. Not after a 413: closing while the client
        # still sends resets the connection, and the client never reads the 413 (uvicorn reads the rest).
        if status == 408:
            headers = [*headers, (b"connection", b"close")]
        if status != 304:  # a 304 has no body, and no Content-Length but the full answer's (RFC 9110 §8.6)
            headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.service.metrics.request(method, route, status, time.perf_counter() - started)

    def _route(self, path: str, method: str) -> tuple[str, Callable, str | None, str | None]:
        """(route template, handler, model, version), or 404 / 405."""
        fixed = self.fixed.get(path.rstrip("/") or path)
        if fixed is not None:
            allowed, handler = fixed
            route, model, version = path.rstrip("/") or path, None, None
        else:
            match = MODEL_PATH.fullmatch(path)
            if match is None:
                hint = "; this bundle has no browser page (`make web` builds one)" if path == "/" else ""
                raise ProtocolError(404, f"no route {path}{hint}")
            model, version, action = match["model"], match["version"], match["action"]
            allowed, handler = self.actions[action]
            route = "/v2/models/{model}" + ("/versions/{version}" if version else "") + (f"/{action}" if action else "")
        if method != allowed:
            raise ProtocolError(405, f"{method} is not allowed on {route}; use {allowed}")
        return route, handler, model, version

    async def model_metadata(self, scope: dict, receive: Callable, model: str, version: str | None) -> Answer:
        self.service.check_model(model, version)
        return 200, self._metadata, JSON

    async def server_ready(self, scope: dict, receive: Callable, model: None, version: None) -> Answer:
        self._check_ready()
        return 200, b'{"ready":true}', JSON

    async def model_ready(self, scope: dict, receive: Callable, model: str, version: str | None) -> Answer:
        self.service.check_model(model, version)
        self._check_ready()
        return 200, orjson.dumps({"name": model, "ready": True}), JSON

    def _check_ready(self) -> None:
        """The protocol's "false" for a readiness probe is a 4xx: the inference thread has ended."""
        if not self.service.running:
            raise ProtocolError(400, "not ready: the inference thread has stopped; restart the server")

    async def infer(self, scope: dict, receive: Callable, model: str, version: str | None) -> Answer:
        service = self.service
        service.check_model(model, version)
        header_length, declared = _headers(scope)
        body = await _read_body(receive, declared, service.limits.max_request_bytes, self.bodies)
        request = parse_infer(body, header_length, service.contract, service.limits.max_batch)
        probs = await service.infer(request.inputs)
        content, headers = encode_response(service.contract, request, probs)
        return 200, content, [(name.lower().encode(), value.encode()) for name, value in headers.items()]

    async def stats(self, scope: dict, receive: Callable, model: str | None, version: str | None) -> Answer:
        if model is not None:
            self.service.check_model(model, version)
        return 200, orjson.dumps(self.service.statistics_response()), JSON

    async def prometheus(self, scope: dict, receive: Callable, model: None, version: None) -> Answer:
        return 200, self.service.metrics.exposition(), [(b"content-type", CONTENT_TYPE.encode())]


def _static(body: bytes) -> Callable[..., Awaitable[Answer]]:
    async def answer(scope: dict, receive: Callable, model: str | None, version: str | None) -> Answer:
        return 200, body, JSON
    return answer


def _page(page: PageFile) -> Callable[..., Awaitable[Answer]]:
    """A page file's answer: 304 when the browser's copy is current (If-None-Match), else the file."""
    async def answer(scope: dict, receive: Callable, model: str | None, version: str | None) -> Answer:
        for name, value in scope["headers"]:
            if name == b"if-none-match" and page.etag in value:
                return 304, b"", page.headers
        return 200, page.body, page.headers
    return answer


def _headers(scope: dict) -> tuple[str | None, int | None]:
    """(Inference-Header-Content-Length, Content-Length) from the request's headers."""
    header_length = declared = None
    for name, value in scope["headers"]:
        if name == HEADER_LENGTH_KEY:
            header_length = value.decode("latin-1")
        elif name == b"content-length" and value.isdigit():
            declared = int(value)
    return header_length, declared


async def _read_body(receive: Callable, declared: int | None, limit: int, deadlines: BodyDeadlines) -> bytes:
    """The body, refused with 413 past `limit` bytes (declared, or counted while it arrives) and with
    408 when it has not all arrived `deadlines.timeout_s` after the read began (a stalled client holds
    its connection no longer; the watcher must be running, as the server runs it)."""
    if declared is not None and declared > limit:
        raise ProtocolError(413, f"request body of {declared} bytes exceeds the limit of {limit}")
    chunks, size, task = [], 0, deadlines.begin()
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise ProtocolError(413, f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except asyncio.CancelledError:
        if deadlines.expired(task):
            raise ProtocolError(408, f"the request body did not arrive within {deadlines.timeout_s:g} s") from None
        raise
    finally:
        deadlines.end(task)
