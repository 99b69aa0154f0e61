"""The Open Inference Protocol's infer request and response (KServe V2 / Triton HTTP/REST), with
Triton's binary tensor data extension; no web framework here, so every rule is testable alone.

Request body: a JSON object, optionally followed by raw tensor bytes. With the binary extension the
`Inference-Header-Content-Length` header gives the JSON's length in bytes, each binary input says
`"parameters": {"binary_data_size": <bytes>}` and its bytes follow the JSON in input order
(little-endian, row-major). Outputs come back as JSON `data` or, when the request asks
(`"parameters": {"binary_data_output": true}` for all outputs, or `"binary_data": true` per
requested output), as bytes after the JSON with the same header. tritonclient.http sends binary
inputs and asks for binary outputs by default, often without a Content-Type header.

Every violation raises `ProtocolError(status, message)`: 400 for a bad request, 413 beyond the
configured batch or size limits. `check_input` and `refusal` are the rules the gRPC side
(deploy.serve.grpc_service) shares. JSON is read and written with orjson (C, several times faster than the
standard library on these number arrays); a body orjson refuses is read again by `json`, so NaN and
Infinity, which `json` accepts, still get the answer that names them. Refs: kserve.github.io/website (Open Inference Protocol, REST),
github.com/triton-inference-server/server docs/protocol/extension_binary_data.md.
"""

from __future__ import annotations

import functools
import json
import math
from typing import NamedTuple

import numpy as np
import orjson

from handoff.contract import Contract, ContractError

HEADER_LENGTH = "Inference-Header-Content-Length"
DATATYPE = "FP32"  # the model's one tensor type; float32 little-endian on the wire
WIRE_DTYPE = np.dtype("<f4")
BINARY_DATA_SIZE = "binary_data_size"
JSON_HEADERS = [(b"content-type", b"application/json")]


class ProtocolError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class InferRequest(NamedTuple):
    id: str | None
    inputs: np.ndarray  # float32, N x contract.input_shape; its values are checked per batch (`refusal`)
    binary_output: bool


class _Header(NamedTuple):
    """What an infer request's JSON says, checked against the contract: all but the binary bytes."""
    id: str | None
    shape: tuple[int, ...]
    binary_size: int | None  # bytes of the input after the JSON; None: the input is JSON `data`
    data: object  # the JSON `data`, when binary_size is None
    binary_output: bool


def parse_infer(body: bytes, header_length: str | None, contract: Contract, max_batch: int) -> InferRequest:
    """Decode one infer request body and check its form against the model's contract: names,
    datatype, shape, sizes. Its values (finite, in range) are checked per batch: `refusal`."""
    header, binary = _split(body, header_length)
    # A client sends the same JSON header with every binary request of one shape: read each once.
    read = _read_header_cached if binary and len(header) <= CACHED_HEADER_BYTES else _read_header
    request = read(header, contract, max_batch)
    if request.binary_size is None:
        array, used = _json_data(request.data, math.prod(request.shape), list(request.shape)), 0
    elif request.binary_size > len(binary):
        raise ProtocolError(400, f"{BINARY_DATA_SIZE} {request.binary_size} exceeds the {len(binary)} bytes that follow the JSON")
    else:
        array = np.frombuffer(binary, dtype=WIRE_DTYPE, count=request.binary_size // WIRE_DTYPE.itemsize)
        used = request.binary_size
    if used != len(binary):
        raise ProtocolError(400, f"the body holds {len(binary) - used} bytes beyond the declared binary_data_size")
    return InferRequest(request.id, array.astype(np.float32, copy=False).reshape(request.shape), request.binary_output)


def _read_header(header: bytes, contract: Contract, max_batch: int) -> _Header:
    request = _json_object(header)
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise ProtocolError(400, f"'inputs' must be a list with one tensor, {contract.input_name!r}")
    spec = inputs[0]
    shape = check_input(spec.get("name"), spec.get("datatype"), spec.get("shape"), contract, max_batch)
    size = _parameters(spec).get(BINARY_DATA_SIZE)
    if size is not None:
        if "data" in spec:
            raise ProtocolError(400, f"input {contract.input_name!r} has both 'data' and {BINARY_DATA_SIZE}")
        needed = math.prod(shape) * WIRE_DTYPE.itemsize
        if not isinstance(size, int) or isinstance(size, bool) or size != needed:
            raise ProtocolError(400, f"{BINARY_DATA_SIZE} {size!r} does not match shape {shape} of {DATATYPE} ({needed} bytes)")
    request_id = request.get("id")  # echoed in the response
    if request_id is not None and (not isinstance(request_id, str) or not _encodable(request_id)):
        raise ProtocolError(400, "'id' must be a string of Unicode characters (no lone surrogates)")
    return _Header(request_id, tuple(shape), size, spec.get("data") if size is None else None, _binary_output(request, contract))


# Headers read before, by their bytes (and the contract and limit they were checked against); errors
# are not cached. Only small headers of binary requests: JSON `data` makes every header different.
CACHED_HEADER_BYTES = 4096
_read_header_cached = functools.lru_cache(maxsize=256)(_read_header)


def _encodable(text: str) -> bool:
    """False for text `json` reads from a lone surrogate escape ("\\ud800"), which no UTF-8 answer can carry."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tail): the whole body is JSON unless the header length is given."""
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise ProtocolError(400, f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
    if not 0 < length <= len(body):
        raise ProtocolError(400, f"{HEADER_LENGTH} {length} is outside the body's {len(body)} bytes")
    return body[:length], body[length:]


def _json_object(header: bytes) -> dict:
    try:
        request = orjson.loads(header)
    except orjson.JSONDecodeError:
        try:  # the slow path, for errors only: `json` reads NaN and Infinity, which orjson refuses
            request = json.loads(header)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:  # too deep for either
            raise ProtocolError(400, f"malformed JSON in the request: {err}") from err
    if not isinstance(request, dict):
        raise ProtocolError(400, "the request must be a JSON object")
    return request


def check_input(name: object, datatype: object, shape: object, contract: Contract, max_batch: int) -> list[int]:
    """The input's shape, once its name, datatype and shape match the contract and the batch limit."""
    if name != contract.input_name:
        raise ProtocolError(400, f"unknown input {name!r}; the model takes {contract.input_name!r}")
    if datatype != DATATYPE:
        raise ProtocolError(400, f"input {contract.input_name!r} has datatype {datatype!r}; expected {DATATYPE!r}")
    return _shape(shape, contract, max_batch)


def refusal(rows: np.ndarray, contract: Contract) -> ProtocolError | None:
    """The 400 to answer when the model must not see `rows` (non-finite, out of range), else None.
    The server asks once per batch (deploy.serve.batcher), and per request only when a batch fails."""
    try:
        contract.check(rows)
    except ContractError as err:
        return ProtocolError(400, f"input {contract.input_name!r}: {err}")
    return None


def _shape(shape: object, contract: Contract, max_batch: int) -> list[int]:
    expected = ["N", *contract.input_shape]
    if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
            or len(shape) != len(expected) or tuple(shape[1:]) != contract.input_shape or shape[0] < 1):
        raise ProtocolError(400, f"input {contract.input_name!r} has shape {shape!r}; expected {expected} with N >= 1")
    if shape[0] > max_batch:
        raise ProtocolError(413, f"batch {shape[0]} exceeds this server's maximum batch of {max_batch}")
    return list(shape)


def _json_data(data: object, count: int, shape: list[int]) -> np.ndarray:
    """JSON `data`: numbers, flat or nested row-major (both are allowed by the protocol)."""
    if not isinstance(data, list):
        raise ProtocolError(400, "an input needs 'data' (a list of numbers) or parameters.binary_data_size")
    bound = 2 * count + 16  # far more values than the shape needs: refused before numpy copies them all
    if len(data) > bound:
        raise ProtocolError(400, f"'data' holds {len(data)} values; shape {shape} needs {count}")
    if data and isinstance(data[0], list) and _more_values_than(data, bound):
        raise ProtocolError(400, f"'data' holds more than {bound} values; shape {shape} needs {count}")
    try:
        array = np.array(data)
    except ValueError as err:  # ragged nesting
        raise ProtocolError(400, f"'data' is not a regular array of numbers ({err})") from err
    if array.dtype.kind not in "iuf":  # strings, booleans, nulls, objects
        raise ProtocolError(400, f"'data' must hold only numbers for {DATATYPE}")
    if array.size != count:
        raise ProtocolError(400, f"'data' holds {array.size} values; shape {shape} needs {count}")
    return array.astype(np.float32).ravel()


def _more_values_than(data: list, limit: int) -> bool:
    """Whether nested lists hold more than `limit` non-list values; stops counting past it."""
    stack, seen = [data], 0
    while stack:
        for item in stack.pop():
            if isinstance(item, list):
                stack.append(item)
            else:
                seen += 1
                if seen > limit:
                    return True
    return False


def _binary_output(request: dict, contract: Contract) -> bool:
    binary = _parameters(request).get("binary_data_output", False)
    outputs = request.get("outputs")
    if outputs is None:
        return bool(binary)
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise ProtocolError(400, "'outputs' must be a list of objects")
    for output in outputs:
        if output.get("name") != contract.output_name:
            raise ProtocolError(400, f"unknown output {output.get('name')!r}; the model returns {contract.output_name!r}")
        parameters = _parameters(output)
        if parameters.get("class_count"):
            raise ProtocolError(400, "the classification extension (class_count) is not supported; read the probabilities")
        binary = parameters.get("binary_data", binary)
    return bool(binary)


def _parameters(obj: dict) -> dict:
    parameters = obj.get("parameters", {})
    if not isinstance(parameters, dict):
        raise ProtocolError(400, "'parameters' must be a JSON object")
    return parameters


def encode_response(contract: Contract, request: InferRequest, probs: np.ndarray, model: str,
                    version: str) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The response body and its HTTP headers (ASGI's lower-case byte pairs) for `probs` (float32,
    N x classes) of `model` version `version`."""
    if request.binary_output:
        header, headers = _binary_response_header(model, version, contract.output_name, probs.shape, request.id)
        return header + probs.astype(WIRE_DTYPE).tobytes(), headers
    # float32 written by orjson as the shortest text that reads back to the same float32
    output = {"name": contract.output_name, "datatype": DATATYPE, "shape": list(probs.shape),
              "data": np.ascontiguousarray(probs, dtype=np.float32).ravel()}
    return orjson.dumps(_response(model, version, output, request.id), option=orjson.OPT_SERIALIZE_NUMPY), JSON_HEADERS


@functools.lru_cache(maxsize=256)  # the same few answers' JSON, request after request
def _binary_response_header(model: str, version: str, output_name: str, shape: tuple[int, ...],
                            request_id: str | None) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    size = math.prod(shape) * WIRE_DTYPE.itemsize
    output = {"name": output_name, "datatype": DATATYPE, "shape": list(shape), "parameters": {BINARY_DATA_SIZE: size}}
    header = orjson.dumps(_response(model, version, output, request_id))
    return header, [(b"content-type", b"application/octet-stream"), (HEADER_LENGTH.lower().encode(), str(len(header)).encode())]


def _response(model: str, version: str, output: dict, request_id: str | None) -> dict:
    response = {"model_name": model, "model_version": version, "outputs": [output]}
    if request_id is not None:
        response["id"] = request_id
    return response
