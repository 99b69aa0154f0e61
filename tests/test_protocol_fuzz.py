"""Property-based fuzzing (hypothesis) of the request parser and the HTTP app in one process: whatever
the body, headers, lengths or path, the answer is a 2xx or a 4xx in the protocol's shape, never a 5xx
and never an exception. Bodies are drawn near the protocol (valid requests with one part changed) as
well as far from it (any JSON, any bytes)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import math
import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from deploy.batch_policy import BatchPolicy
from deploy.bundle import load_bundle
from deploy.serve.http_app import MATCHED_PATHS, HttpApp
from deploy.serve.metrics import Metrics
from deploy.serve.models import ServedModels
from deploy.serve.protocol import ProtocolError, encode_response, parse_infer, refusal
from deploy.serve.repository import Repository
from deploy.serve.service import ModelService, ServingLimits

MAX_BATCH = 4
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text with lone surrogates too: `json` reads "\ud800" into a str that no UTF-8 answer can carry.
# (joined from characters: st.text drops surrogates whatever its alphabet)
texts = st.lists(st.characters() | st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=8).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=20,
)
shapes = st.lists(st.one_of(st.integers(-2, 6), st.just(28), st.just(1), st.text(max_size=2), st.booleans()), max_size=5)
numbers = st.floats(allow_nan=True, allow_infinity=True, width=32) | st.integers(-3, 3)


def mostly(valid: object, other: st.SearchStrategy) -> st.SearchStrategy:
    """`valid` 15 times in 16, else a draw from `other`: with a dozen parts drawn so, about half of the
    requests stay valid and the others break one or two parts, far into the parser."""
    return st.integers(0, 15).flatmap(lambda i: other if i == 0 else st.just(valid))


@st.composite
def near_requests(draw) -> tuple[bytes, str | None]:
    """A request body and Inference-Header-Content-Length: a valid request with parts drawn freely."""
    rows = draw(mostly(1, st.integers(0, MAX_BATCH + 1)))
    shape = draw(mostly([rows, 1, 28, 28], shapes))
    tensor = {"name": draw(mostly("image", st.sampled_from(["pixels", ""]))),
              "datatype": draw(mostly("FP32", st.sampled_from(["FP64", "INT8", ""]))), "shape": shape}
    count = math.prod(d for d in shape if isinstance(d, int) and not isinstance(d, bool)) if shape else 0
    valid_values = np.full(max(min(count, 4 * 784), 0), draw(mostly(0.5, numbers)), "<f4")
    binary = draw(st.booleans())
    tail = b""
    if binary:
        size = draw(mostly(max(count, 0) * 4, st.one_of(st.integers(-4, 5000), st.text(max_size=3))))
        tensor["parameters"] = draw(mostly({"binary_data_size": size}, json_values))
        tail = draw(mostly(valid_values.tobytes(), st.lists(numbers, max_size=2 * 784).map(lambda v: np.array(v, "<f4").tobytes())))
    else:
        tensor["data"] = draw(mostly(valid_values.tolist(), st.one_of(st.lists(numbers, max_size=8), json_values)))
    request = {"inputs": draw(mostly([tensor], st.one_of(st.lists(st.just(tensor), max_size=3), json_values)))}
    if draw(st.booleans()):
        request["outputs"] = draw(mostly([{"name": "probs", "parameters": {"binary_data": draw(st.booleans())}}], json_values))
    if draw(st.booleans()):
        request["id"] = draw(mostly("r1", st.one_of(texts, json_values)))
    header = json.dumps(request).encode()  # writes NaN, Infinity and integers past 64 bits, as some clients do
    length = draw(mostly(str(len(header)), st.one_of(st.text(max_size=6), st.integers(-5, len(header) + 10).map(str))))
    return header + tail, length if binary else draw(mostly(None, st.just(length)))


def open_version(path: Path, name: str | None = None, version: str | None = None, metrics: Metrics | None = None) -> ModelService:
    return ModelService(load_bundle(path), ServingLimits(BatchPolicy(MAX_BATCH, 0, 64), 1 << 16), metrics or Metrics(), name, version)


@pytest.fixture(scope="module")
def served(mnist_bundle, tmp_path_factory):
    """A repository server's app: mnist_mlp version 1 (the bundle) beside a model whose bundle is
    broken; repository routes load and unload them while the fuzzer runs."""
    root = tmp_path_factory.mktemp("repository")
    shutil.copytree(mnist_bundle, root / "mnist_mlp" / "1")
    shutil.copytree(mnist_bundle, root / "broken" / "1")
    (root / "broken" / "1" / "model.onnx").write_bytes(b"not a model")
    metrics, models = Metrics(), ServedModels("test")
    repository = Repository(root, models, functools.partial(open_version, metrics=metrics))
    asyncio.run(repository.load("mnist_mlp"))
    yield HttpApp(models, metrics, 1 << 16, repository=repository), models
    for service in models:
        service.stop()


@pytest.fixture(scope="module")
def service(served):
    return served[1].resolve("mnist_mlp")


def within_range(inputs: np.ndarray, contract) -> bool:
    """The oracle of the value check: finite, and inside the contract's range."""
    return bool(np.isfinite(inputs).all() and inputs.min() >= contract.input_min
                and (contract.input_max is None or inputs.max() <= contract.input_max))


def check_parse(body: bytes, header_length: str | None, contract) -> None:
    try:
        request = parse_infer(body, header_length, contract, MAX_BATCH)
    except ProtocolError as err:
        event(f"refused with {err.status}")  # --hypothesis-show-statistics: how often each outcome was drawn
        assert 400 <= err.status < 500, err
        return
    refused = refusal(request.inputs, contract)  # what the batcher asks of the request's batch, then of it
    if refused is not None:
        event("refused for its values")
        assert refused.status == 400 and not within_range(request.inputs, contract), refused
        return
    event("accepted")
    assert request.inputs.dtype == np.float32 and request.inputs.shape[1:] == contract.input_shape
    assert 1 <= len(request.inputs) <= MAX_BATCH and within_range(request.inputs, contract)
    probs = np.full((len(request.inputs), len(contract.classes)), 0.1, np.float32)
    body, headers = encode_response(contract, request, probs, "mnist_mlp", "1")  # what the server answers must be writable
    assert body and headers


@FUZZ
@given(near_requests())
def test_the_parser_answers_near_misses_with_a_4xx_or_a_checked_request(service, drawn):
    check_parse(*drawn, service.contract)


@FUZZ
@given(st.binary(max_size=4096), st.one_of(st.none(), st.text(max_size=8)))
def test_the_parser_answers_any_bytes_with_a_4xx_or_a_checked_request(service, body, header_length):
    check_parse(body, header_length, service.contract)


def test_a_header_read_before_is_read_again_for_its_own_tail_and_contract(service):
    contract = service.contract
    header = orjson.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                                       "parameters": {"binary_data_size": 784 * 4}}]})
    rows = [np.full(784, value, "<f4") for value in (0.25, 0.75)]
    parsed = [parse_infer(header + row.tobytes(), str(len(header)), contract, MAX_BATCH) for row in rows]
    for request, row in zip(parsed, rows):  # the second body's header was read before: its own bytes still
        np.testing.assert_array_equal(request.inputs.ravel(), row)
    with pytest.raises(ProtocolError, match="exceeds the 4 bytes"):
        parse_infer(header + rows[0].tobytes()[:4], str(len(header)), contract, MAX_BATCH)
    otto_like = dataclasses.replace(contract, input_shape=(93,))  # the same header, checked against another model
    with pytest.raises(ProtocolError, match="has shape"):
        parse_infer(header + rows[0].tobytes(), str(len(header)), otto_like, MAX_BATCH)


async def call(app: HttpApp, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes, chunks: int) -> tuple[int, bytes]:
    """One request through the ASGI app, its body in `chunks` pieces: (status, response body)."""
    pieces = [body[i * len(body) // chunks:(i + 1) * len(body) // chunks] for i in range(chunks)]
    messages = [{"type": "http.request", "body": p, "more_body": i < chunks - 1} for i, p in enumerate(pieces)]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app({"type": "http", "method": method, "path": path, "headers": headers}, receive, send)
    return sent[0]["status"], sent[1]["body"]


# A repository request's body: empty, Triton's JSON ({"ready": ...}, {"parameters": ...}), or anything.
repository_requests = st.one_of(st.just(b""), json_values.map(lambda value: json.dumps(value).encode()), st.binary(max_size=64)).map(lambda body: (body, None))
header_pairs = st.lists(st.tuples(st.sampled_from([b"content-length", b"inference-header-content-length", b"content-type", b"x"]),
                                  st.binary(max_size=8)), max_size=4)
paths = st.one_of(st.sampled_from(["/v2/models/mnist_mlp/infer", "/v2/models/mnist_mlp/versions/1/infer", "/v2/models/m/infer",
                                   "/v2", "/v2/health/ready", "/v2/models/mnist_mlp/stats", "/metrics", "/v2/models/mnist_mlp",
                                   "/v2/repository/index", "/v2/repository/models/mnist_mlp/load", "/v2/repository/models/mnist_mlp/unload",
                                   "/v2/repository/models/broken/load", "/v2/repository/models/../load", "/v2/repository/models/m/unload"]),
                  st.text(max_size=30).map(lambda t: "/" + t))


@FUZZ
@given(mostly("POST", st.sampled_from(["GET", "HEAD", "PUT", "DELETE"])), mostly("/v2/models/mnist_mlp/infer", paths), header_pairs,
       st.one_of(near_requests(), repository_requests), st.integers(1, 3))
def test_the_http_app_never_answers_5xx(served, method, path, headers, drawn, chunks):
    """Repository requests too: loading and unloading while the fuzzer infers, and a broken model's load."""
    body, header_length = drawn
    if header_length is not None:
        headers = [*headers, (b"inference-header-content-length", header_length.encode())]
    status, answer = asyncio.run(call(served[0], method, path, headers, body, chunks))
    event(f"status {status}")
    assert status < 500, answer
    if status >= 400 and method != "HEAD":
        assert set(orjson.loads(answer)) == {"error"}


def test_a_fault_of_the_server_is_a_logged_json_500_and_readiness_follows_the_inference_thread(mnist_bundle, caplog):
    metrics, models = Metrics(), ServedModels("test")
    service = open_version(mnist_bundle, metrics=metrics)
    models.swap(service.name, {service.version: service})

    def broken(inputs: np.ndarray) -> np.ndarray:
        raise RuntimeError("the session is gone")

    service.batcher._run = broken  # what a failing ONNX Runtime call would do
    app, body = HttpApp(models, metrics, 1 << 16), orjson.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": [1, 1, 28, 28],
                                                            "data": [0.5] * 784}]})
    service.start()
    try:
        status, answer = asyncio.run(call(app, "POST", "/v2/models/mnist_mlp/infer", [], body, 1))
        ready = asyncio.run(call(app, "GET", "/v2/health/ready", [], b"", 1))
    finally:
        service.stop()
    assert (status, orjson.loads(answer)) == (500, {"error": "internal error: RuntimeError: the session is gone"})
    assert "POST /v2/models/mnist_mlp/infer failed" in caplog.text and "RuntimeError" in caplog.text
    assert 'mlp_inference_failures_total{model="mnist_mlp",status="500",version="1"} 1.0' in metrics.exposition().decode()
    assert ready[0] == 200
    stopped = asyncio.run(call(app, "GET", "/v2/health/ready", [], b"", 1))
    assert stopped[0] == 400 and "not ready" in orjson.loads(stopped[1])["error"]


def test_route_matches_are_kept_for_at_most_a_bound_of_paths_and_answers_do_not_change(served):
    """Each path's route match is kept (a lookup instead of a regex a request); clients choose the
    paths, so past MATCHED_PATHS distinct ones the kept matches start over, and every answer is
    what the path alone decides."""
    app, _ = served

    async def metadata(paths: list[str]) -> list[tuple[int, str]]:
        return [((answer := await call(app, "GET", path, [], b"", 1))[0], orjson.loads(answer[1]).get("error", "")) for path in paths]

    known, unknown = ["/v2/models/mnist_mlp", "/v2/models/mnist_mlp/versions/1/ready"], [f"/v2/models/m{i}" for i in range(MATCHED_PATHS + 10)]
    first = asyncio.run(metadata(known))
    answers = asyncio.run(metadata(unknown))
    assert all(status == 404 and f"unknown model 'm{i}'" in error for i, (status, error) in enumerate(answers))
    assert 0 < len(app._matched) <= MATCHED_PATHS
    assert asyncio.run(metadata(known)) == first == [(200, ""), (200, "")]
    assert asyncio.run(call(app, "POST", "/v2/models/mnist_mlp", [], b"", 1))[0] == 405  # a kept match still checks the method
