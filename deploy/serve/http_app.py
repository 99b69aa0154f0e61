"""The Open Inference Protocol's HTTP/REST side as a bare ASGI app (run by uvicorn with uvloop and
httptools), torch-free.

    GET  /v2/health/live, /v2/health/ready, /v2        server liveness, readiness, metadata
    GET  /v2/models/{m}[/versions/{v}]                 model metadata; .../ready: model readiness
    POST /v2/models/{m}[/versions/{v}]/infer           JSON `data` or binary tensor data (deploy.serve.protocol)
    GET  /v2/models[/{m}[/versions/{v}]]/stats         Triton's statistics extension
    POST /v2/repository/index                          Triton's repository extension: the models and their state
    POST /v2/repository/models/{m}/load, .../unload    (re-)load a model's versions from the repository, or unload them
    GET  /metrics                                      Prometheus (deploy.serve.metrics)
    GET  /, /<file>                                    the bundle's browser page, when `make web` built one (deploy.serve.pages)
Every GET route answers HEAD. A model named without a version is its highest loaded version, as in
Triton. Errors are `{"error": "..."}`: 400 bad request (and a readiness probe's "not ready", a load
that failed), 403 a restricted API without its header (deploy.serve.access), 404 unknown model,
version or route, 405 wrong method (with `Allow`), 408 a body not all there `body_timeout_s` after
it began, 413 too large, 503 queue full, 500 only for a fault of the server itself (logged with its traceback).

Why no web framework: the protocol has a dozen fixed routes, and a framework's per-request machinery
(request objects, routing tables, middleware tasks) cost more CPU than the model's own batch-1 call.
Each request here is one regex match, one body read and one await on the batcher; everything in the
event loop, no thread hop. Routes (`Route`) and their handlers are the whole app.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

import orjson

from deploy.serve.access import Restriction
from deploy.serve.metrics import CONTENT_TYPE, Metrics
from deploy.serve.models import ServedModels
from deploy.serve.pages import PageFile
from deploy.serve.protocol import HEADER_LENGTH, JSON_HEADERS, ProtocolError, encode_response, parse_infer
from deploy.serve.repository import Repository

JSON = JSON_HEADERS
MODEL_PATH = re.compile(r"/v2/models/(?P<model>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/(?P<action>ready|infer|stats))?")
REPOSITORY_PATH = re.compile(r"/v2/repository/models/(?P<model>[^/]+)/(?P<action>load|unload)")
REPOSITORY_REQUEST_BYTES = 64 << 10  # a repository request is a small JSON object
MATCHED_PATHS = 1024  # distinct request paths whose route match is kept
HEADER_LENGTH_KEY = HEADER_LENGTH.lower().encode()
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, body, headers
log = logging.getLogger("mlp-serve")


class Route(NamedTuple):
    method: str  # the one it allows (GET routes answer HEAD too)
    group: str | None  # its API group for --restricted-api (deploy.serve.access); None: never restricted
    handler: Callable[..., Awaitable[Answer]]


class NotAllowed(ProtocolError):
    """405, with the methods the route allows (the answer's `Allow` header, RFC 9110 §15.5.6)."""

    def __init__(self, message: str, allow: str) -> None:
        super().__init__(405, message)
        self.allow = allow


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
    def __init__(self, models: ServedModels, metrics: Metrics, max_request_bytes: int, body_timeout_s: float = 15.0,
                 pages: dict[str, PageFile] | None = None, repository: Repository | None = None,
                 restriction: Restriction | None = None) -> None:
        self.models, self.metrics, self.max_request_bytes = models, metrics, max_request_bytes
        self.bodies, self.repository, self.restriction = BodyDeadlines(body_timeout_s), repository, restriction
        # path or action -> Route(the method it allows, its API group, handler(scope, receive, model, version) -> Answer)
        self.fixed: dict[str, Route] = {
            "/v2/health/live": Route("GET", "health", _static(b'{"live":true}')),
            "/v2/health/ready": Route("GET", "health", self.server_ready),
            "/v2": Route("GET", "metadata", _static(orjson.dumps(models.server_metadata()))),
            "/v2/models/stats": Route("GET", "statistics", self.stats),
            "/v2/repository/index": Route("POST", "repository", self.repository_index),
            "/metrics": Route("GET", "metrics", self.prometheus),
        }
        self.fixed.update({path: Route("GET", None, _page(page)) for path, page in (pages or {}).items()})
        self.actions = {None: Route("GET", "metadata", self.model_metadata), "ready": Route("GET", "health", self.model_ready),
                        "infer": Route("POST", "inference", self.infer), "stats": Route("GET", "statistics", self.stats),
                        "load": Route("POST", "repository", self.repository_load),
                        "unload": Route("POST", "repository", self.repository_unload)}
        self._matched: dict[str, tuple[str, Route, str | None, str | None]] = {}  # path -> _match(path)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":  # lifespan events: the server starts and stops the service itself
            return
        started, method = time.perf_counter(), scope["method"]
        route, model, version = "unmatched", None, None
        try:
            route, handler, model, version = self._route(scope, method)
            status, body, headers = await handler(scope, receive, model, version)
        except NotAllowed as err:
            status, body, headers = 405, orjson.dumps({"error": str(err)}), [*JSON, (b"allow", err.allow.encode())]
        except ProtocolError as err:
            status, body, headers = err.status, orjson.dumps({"error": str(err)}), JSON
        except ClientGone:
            return
        except Exception as err:  # a fault of the server, not of the request: logged loudly, answered in the protocol's shape
            log.exception("%s %s failed", method, scope["path"])
            status, body, headers = 500, orjson.dumps({"error": f"internal error: {type(err).__name__}: {err}"}), JSON
        if status >= 400 and route.endswith("/infer"):
            self.metrics.failure(model, version or (self.models.versions(model) or [""])[-1], status)
        # After a 408 the rest of the body may never come: close. Not after a 413: closing while the client
        # still sends resets the connection, and the client never reads the 413 (uvicorn reads the rest).
        if status == 408:
            headers = [*headers, (b"connection", b"close")]
        if status != 304:  # a 304 has no body, and no Content-Length but the full answer's (RFC 9110 §8.6)
            headers = [*headers, (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})  # HEAD: GET's headers alone
        self.metrics.request(method, route, status, time.perf_counter() - started)

    def _route(self, scope: dict, method: str) -> tuple[str, Callable, str | None, str | None]:
        """(route template, handler, model, version), or 403 / 404 / 405."""
        path = scope["path"]
        matched = self._matched.get(path)
        if matched is None:  # a path's match never changes: kept, so a request costs a lookup, not a regex
            matched = self._match(path)
            if len(self._matched) >= MATCHED_PATHS:  # clients choose the paths: the cache stays bounded
                self._matched.clear()
            self._matched[path] = matched
        route, fixed, model, version = matched
        if method != fixed.method and not (method == "HEAD" and fixed.method == "GET"):
            allowed = "GET, HEAD" if fixed.method == "GET" else fixed.method  # RFC 9110 §9.3.2: HEAD wherever GET is
            raise NotAllowed(f"{method} is not allowed on {route}; use {allowed}", allowed)
        if self.restriction is not None and fixed.group is not None:
            self.restriction.check(fixed.group, scope["headers"])
        return route, fixed.handler, model, version

    def _match(self, path: str) -> tuple[str, Route, str | None, str | None]:
        """(route template, its Route, model, version) for a path, or 404."""
        fixed = self.fixed.get(path.rstrip("/") or path)
        if fixed is not None:
            return path.rstrip("/") or path, fixed, None, None
        match = MODEL_PATH.fullmatch(path) or REPOSITORY_PATH.fullmatch(path)
        if match is None:
            hint = "; this bundle has no browser page (`make web` builds one)" if path == "/" else ""
            raise ProtocolError(404, f"no route {path}{hint}")
        model, version, action = match["model"], match.groupdict().get("version"), match["action"]
        if action in ("load", "unload"):
            route = "/v2/repository/models/{model}/" + action
        else:
            route = "/v2/models/{model}" + ("/versions/{version}" if version else "") + (f"/{action}" if action else "")
        return route, self.actions[action], model, version

    async def model_metadata(self, scope: dict, receive: Callable, model: str, version: str | None) -> Answer:
        return 200, self.models.metadata_json(model, version, orjson.dumps), JSON

    async def server_ready(self, scope: dict, receive: Callable, model: None, version: None) -> Answer:
        if not self.models.ready:  # the protocol's "false" for a readiness probe is a 4xx
            raise ProtocolError(400, "not ready: no model is loaded, or an inference thread has stopped; see the server's log")
        return 200, b'{"ready":true}', JSON

    async def model_ready(self, scope: dict, receive: Callable, model: str, version: str | None) -> Answer:
        if not self.models.resolve(model, version).running:
            raise ProtocolError(400, "not ready: the inference thread has stopped; restart the server")
        return 200, orjson.dumps({"name": model, "ready": True}), JSON

    async def infer(self, scope: dict, receive: Callable, model: str, version: str | None) -> Answer:
        self.models.resolve(model, version)  # 404 before reading a body for nobody
        header_length, declared = _headers(scope)
        body = await _read_body(receive, declared, self.max_request_bytes, self.bodies)
        # Resolved again after the body's awaits, then queued with none in between: a version swapped
        # out meanwhile never gets the request (deploy.serve.models).
        service = self.models.resolve(model, version)
        request = parse_infer(body, header_length, service.contract, service.limits.max_batch)
        probs = await service.infer(request.inputs)
        return 200, *encode_response(service.contract, request, probs, service.name, service.version)

    async def stats(self, scope: dict, receive: Callable, model: str | None, version: str | None) -> Answer:
        return 200, orjson.dumps(self.models.statistics(model, version)), JSON

    async def prometheus(self, scope: dict, receive: Callable, model: None, version: None) -> Answer:
        return 200, self.metrics.exposition(), [(b"content-type", CONTENT_TYPE.encode())]

    async def repository_index(self, scope: dict, receive: Callable, model: None, version: None) -> Answer:
        """Triton's index: {"ready": true} lists the READY versions only."""
        ready = (await self._repository_request(scope, receive)).get("ready", False)
        if not isinstance(ready, bool):
            raise ProtocolError(400, "'ready' must be true or false")
        entries = self.repository.index(ready) if self.repository is not None else self.models.index()
        return 200, orjson.dumps(entries), JSON

    async def repository_load(self, scope: dict, receive: Callable, model: str, version: None) -> Answer:
        parameters = (await self._repository_request(scope, receive)).get("parameters", {})
        if parameters:  # Triton's config or file overrides: the folder is the only source here
            raise ProtocolError(400, f"load parameters are not supported (got {sorted(parameters) if isinstance(parameters, dict) else parameters!r}); "
                                     "publish the bundle into the repository and load it by name")
        await self._repository_or_400("load").load(model)
        return 200, b"", []

    async def repository_unload(self, scope: dict, receive: Callable, model: str, version: None) -> Answer:
        await self._repository_request(scope, receive)  # unload_dependents: there are no ensembles to follow
        await self._repository_or_400("unload").unload(model)
        return 200, b"", []

    async def _repository_request(self, scope: dict, receive: Callable) -> dict:
        """The optional JSON object a repository request carries ({} for an empty body)."""
        body = await _read_body(receive, _headers(scope)[1], REPOSITORY_REQUEST_BYTES, self.bodies)
        if not body.strip():
            return {}
        try:
            request = orjson.loads(body)
        except orjson.JSONDecodeError as err:
            raise ProtocolError(400, f"the request body is not JSON: {err}") from None
        if not isinstance(request, dict):
            raise ProtocolError(400, "the request body must be a JSON object")
        return request

    def _repository_or_400(self, action: str) -> Repository:
        if self.repository is None:
            raise ProtocolError(400, f"cannot {action}: this server serves one bundle (--bundle); "
                                     "start it with --repository DIR to load and unload models")
        return self.repository


def _static(body: bytes) -> Callable[..., Awaitable[Answer]]:
    async def answer(scope: dict, receive: Callable, model: str | None, version: str | None) -> Answer:
        return 200, body, JSON
    return answer


def _page(page: PageFile) -> Callable[..., Awaitable[Answer]]:
    """A page file's answer, gzipped when the browser accepts it: 304 when the browser's copy is
    current (If-None-Match), else the file."""
    async def answer(scope: dict, receive: Callable, model: str | None, version: str | None) -> Answer:
        chosen = page.gzipped if page.gzipped is not None and _accepts_gzip(scope["headers"]) else page
        for name, value in scope["headers"]:
            if name == b"if-none-match" and chosen.etag in value:
                return 304, b"", chosen.headers
        return 200, chosen.body, chosen.headers
    return answer


def _accepts_gzip(headers: list[tuple[bytes, bytes]]) -> bool:
    """Accept-Encoding lists gzip (or *) with no q=0 (RFC 9110 §12.5.3)."""
    for name, value in headers:
        if name == b"accept-encoding":
            for coding in value.lower().split(b","):
                token, _, params = coding.partition(b";")
                if token.strip() in (b"gzip", b"*"):
                    params = params.strip()
                    try:
                        return not params.startswith(b"q=") or float(params[2:]) > 0
                    except ValueError:
                        return False
    return False


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
