"""mlp-serve as users meet it: the real server (torch blocked) on a loopback port, spoken to by the
official tritonclient.http, and by raw HTTP for the requests that client refuses to send."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from conftest import MNIST_BUNDLE_MAX_BATCH, REPO, child_env, running_server, torch_blocked
from deploy.build.__main__ import DeployConfig
from deploy.build.__main__ import run as build_run
from deploy.bundle import load_bundle
from deploy.errors import ExitCode

# One worker runs these (pytest-xdist --dist loadgroup): their servers' ports are picked free, then bound.
pytestmark = pytest.mark.xdist_group("servers")

MAX_REQUEST_BYTES = 1 << 20  # 1 MiB: a full batch of 64 images fits in binary (200 kB) and in JSON (~0.6 MB)
CLIENTS, REQUESTS_PER_CLIENT = 8, 200


@pytest.fixture(scope="module")
def server(mnist_bundle):
    with running_server(mnist_bundle, "--max-request-bytes", str(MAX_REQUEST_BYTES)) as url:
        yield url


@pytest.fixture(scope="module")
def images(mnist):
    """The first MNIST test images that fill one maximal request, float32 N x 1 x 28 x 28, and labels."""
    return mnist.held_out.inputs[:MNIST_BUNDLE_MAX_BATCH].numpy(), mnist.held_out.labels[:MNIST_BUNDLE_MAX_BATCH].numpy()


def test_health_and_metadata(server):
    client = triton_http.InferenceServerClient(server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mnist_mlp") and client.is_model_ready("mnist_mlp", "1")
    assert not client.is_model_ready("mnist_mlp", "2") and not client.is_model_ready("other")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    for version in ("", "1"):
        meta = client.get_model_metadata("mnist_mlp", version)
        assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
        assert meta["outputs"] == [{"name": "probs", "datatype": "FP32", "shape": [-1, 10]}]
    with pytest.raises(InferenceServerException, match="unknown model 'other'"):
        client.get_model_metadata("other")


@pytest.mark.parametrize("binary_in", [True, False], ids=["binary-in", "json-in"])
@pytest.mark.parametrize("binary_out", [True, False, None], ids=["binary-out", "json-out", "default-out"])
def test_infer_with_every_encoding(server, mnist_bundle, images, binary_in, binary_out):
    inputs, labels = images
    client = triton_http.InferenceServerClient(server)
    tensor = triton_http.InferInput("image", list(inputs.shape), "FP32")
    tensor.set_data_from_numpy(inputs, binary_data=binary_in)
    outputs = None if binary_out is None else [triton_http.InferRequestedOutput("probs", binary_data=binary_out)]
    result = client.infer("mnist_mlp", [tensor], outputs=outputs, model_version="1", request_id="r1")
    probs = result.as_numpy("probs")
    expected = load_bundle(mnist_bundle).predict(inputs)
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-6)  # JSON round-trips float32 through text
    assert (probs.argmax(1) == labels).mean() >= 0.9 and result.get_response()["id"] == "r1"
    binary = result.get_output("probs").get("parameters", {}).get("binary_data_size") is not None
    assert binary == (binary_out is not False)  # the client's default asks for binary outputs


def test_json_with_and_without_content_type(server, images):
    body = _json_request(images[0][:2].ravel().tolist(), [2, 1, 28, 28])
    for headers in ({}, {"Content-Type": "application/json"}):
        status, response = _post(server, body, headers)
        assert status == 200 and response["outputs"][0]["shape"] == [2, 10], response


BAD_REQUESTS = [  # (id, body, headers, status, message fragment)
    ("malformed-json", b'{"inputs": [', {}, 400, "malformed JSON"),
    ("not-an-object", b"[]", {}, 400, "JSON object"),
    ("no-inputs", b"{}", {}, 400, "'inputs' must be a list"),
    ("parameters-not-an-object", {"parameters": []}, {}, 400, "'parameters' must be"),
    ("unknown-input", {"name": "pixels"}, {}, 400, "unknown input 'pixels'"),
    ("wrong-datatype", {"datatype": "INT32"}, {}, 400, "datatype 'INT32'"),
    ("wrong-shape", {"shape": [1, 784], "data": [0.0] * 784}, {}, 400, "has shape [1, 784]"),
    ("data-shorter-than-shape", {"data": [0.0] * 783}, {}, 400, "holds 783 values"),
    ("ragged-data", {"data": [[0.0] * 784, [0.0]]}, {}, 400, "not a regular array"),
    ("data-far-beyond-shape", {"data": [0.0] * 2000}, {}, 400, "holds 2000 values"),  # refused before numpy copies it
    ("nested-data-far-beyond-shape", {"data": [[0.0] * 2000]}, {}, 400, "holds more than 1584 values"),
    ("string-data", {"data": ["0"] * 784}, {}, 400, "only numbers"),
    ("nan", {"data": [float("nan")] + [0.0] * 783}, {}, 400, "NaN"),
    ("out-of-range", {"data": [2.0] + [0.0] * 783}, {}, 400, "outside the model's range [0, 1]"),
    ("unknown-output", {"outputs": [{"name": "logits"}]}, {}, 400, "unknown output 'logits'"),
    ("binary-size-mismatch", {"binary": 100}, {}, 400, "binary_data_size"),
    ("bad-header-length", {"header_length": "abc"}, {}, 400, "must be an integer"),
    ("header-length-past-body", {"header_length": "99999999"}, {}, 400, "outside the body"),
    ("batch-too-large", {"shape": [MNIST_BUNDLE_MAX_BATCH + 1, 1, 28, 28], "data": [0.0]}, {}, 413, "maximum batch"),
    ("body-too-large", b"{" + b" " * MAX_REQUEST_BYTES + b"}", {}, 413, "exceeds the limit"),
]


@pytest.mark.parametrize("body, headers, status, message", [case[1:] for case in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS])
def test_bad_requests_get_the_protocols_error(server, body, headers, status, message):
    got, response = _post(server, _bad_body(body, headers), headers)
    assert (got, set(response)) == (status, {"error"}) and message in response["error"], response


@pytest.mark.parametrize("method, path, status", [
    ("POST", "/v2/models/other/infer", 404), ("POST", "/v2/models/mnist_mlp/versions/2/infer", 404),
    ("GET", "/v2/models/mnist_mlp/versions/2", 404), ("GET", "/v2/nothing", 404), ("GET", "/v2/models/mnist_mlp/infer", 405),
])
def test_unknown_models_versions_and_routes(server, method, path, status):
    got, response = _request(server, method, path, _json_request([0.0] * 784, [1, 1, 28, 28]), {})
    assert got == status and isinstance(response["error"], str)


def test_head_on_every_get_route_and_allow_on_405(server):
    """RFC 9110: HEAD answers GET's status and headers without the body; a 405 says what is allowed."""
    for path in ("/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/mnist_mlp", "/v2/models/mnist_mlp/ready",
                 "/v2/models/mnist_mlp/stats", "/metrics"):
        get, head = http.client.HTTPConnection(server, timeout=10), http.client.HTTPConnection(server, timeout=10)
        get.request("GET", path)
        got = get.getresponse()
        body = got.read()
        head.request("HEAD", path)
        answer = head.getresponse()
        assert (answer.status, answer.read()) == (got.status, b"") == (200, b""), path
        if path != "/metrics":  # the metrics change between the two requests
            assert int(answer.headers["content-length"]) == len(body), path
        assert answer.headers["content-type"] == got.headers["content-type"], path
    for method, path, allow in (("DELETE", "/v2/health/ready", "GET, HEAD"), ("GET", "/v2/models/mnist_mlp/infer", "POST"),
                                ("GET", "/v2/repository/index", "POST")):
        connection = http.client.HTTPConnection(server, timeout=10)
        connection.request(method, path)
        response = connection.getresponse()
        assert (response.status, response.headers["allow"]) == (405, allow) and "error" in json.loads(response.read())


def test_bad_requests_leave_the_server_serving_and_are_counted(server, images):
    for body, headers, _, _ in [case[1:] for case in BAD_REQUESTS[:5]]:
        _post(server, _bad_body(body, headers), headers)
    assert _post(server, _json_request(images[0][:1].ravel().tolist(), [1, 1, 28, 28]), {})[0] == 200
    connection = http.client.HTTPConnection(server, timeout=10)
    connection.request("GET", "/metrics")
    metrics = connection.getresponse().read().decode()
    failures = re.search(r'mlp_inference_failures_total\{model="mnist_mlp",status="400",version="1"\} (\S+)', metrics)
    assert failures and float(failures.group(1)) >= 5
    assert "mlp_request_duration_seconds_bucket" in metrics and "mlp_inference_rows_total" in metrics


def test_concurrent_clients_all_succeed(server, mnist_bundle, images):
    """CLIENTS threads x REQUESTS_PER_CLIENT batch-1 binary requests; prints requests/s and latency."""
    inputs = images[0]
    expected = load_bundle(mnist_bundle).predict(inputs).argmax(1)
    latencies, failures = [], []

    def client_loop(worker: int) -> None:
        client = triton_http.InferenceServerClient(server)
        for i in range(REQUESTS_PER_CLIENT):
            row = (worker * REQUESTS_PER_CLIENT + i) % len(inputs)
            tensor = triton_http.InferInput("image", [1, 1, 28, 28], "FP32")
            tensor.set_data_from_numpy(inputs[row : row + 1])
            started = time.perf_counter()
            try:
                probs = client.infer("mnist_mlp", [tensor]).as_numpy("probs")
            except InferenceServerException as err:
                failures.append(str(err))
                continue
            latencies.append(time.perf_counter() - started)
            if probs.argmax() != expected[row]:
                failures.append(f"row {row}: class {probs.argmax()} != {expected[row]}")

    threads = [threading.Thread(target=client_loop, args=(w,)) for w in range(CLIENTS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    assert not failures and len(latencies) == CLIENTS * REQUESTS_PER_CLIENT, failures[:3]
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
    print(f"\nmlp-serve load: {CLIENTS} clients x {REQUESTS_PER_CLIENT} batch-1 binary requests: "
          f"{len(latencies) / elapsed:,.0f} requests/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms")


def test_the_int8_variant_is_served_as_the_bundle_predicts_it(exported, images, tmp_path):
    out = tmp_path / "artifacts"
    shutil.copytree(exported, out, ignore=shutil.ignore_patterns("deploy"))  # mnist_bundle stays the fp32 one
    build_run(DeployConfig(artifacts=str(out), variant="int8", max_batch=MNIST_BUNDLE_MAX_BATCH))
    inputs = images[0]
    with running_server(out / "deploy", "--variant", "int8") as url:
        client = triton_http.InferenceServerClient(url)
        tensor = triton_http.InferInput("image", list(inputs.shape), "FP32")
        tensor.set_data_from_numpy(inputs)
        probs = client.infer("mnist_mlp", [tensor]).as_numpy("probs")
    np.testing.assert_allclose(probs, load_bundle(out / "deploy", "int8").predict(inputs), rtol=0, atol=1e-6)
    assert np.abs(probs - load_bundle(out / "deploy", "fp32").predict(inputs)).max() > 1e-6  # int8 indeed, not fp32
    refused = subprocess.run([sys.executable, "-m", "deploy.serve", "--bundle", str(out / "deploy"), "--variant", "fp16"],
                             env=torch_blocked(child_env()), cwd=REPO, capture_output=True, text=True, timeout=120)
    assert refused.returncode == ExitCode.BAD_MODEL and "no variant 'fp16' in this bundle; it has fp32, int8" in refused.stderr


def _json_request(data: list, shape: list[int], **extra) -> bytes:
    return json.dumps({"inputs": [{"name": "image", "shape": shape, "datatype": "FP32", "data": data}], **extra}).encode()


def _bad_body(body, headers: dict) -> bytes:
    """A body from BAD_REQUESTS: raw bytes, or overrides of a valid one-image JSON request."""
    if isinstance(body, bytes):
        return body
    spec = {"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.0] * 784}
    spec |= {k: v for k, v in body.items() if k in spec}
    request = {"inputs": [spec], **{k: body[k] for k in ("outputs", "parameters") if k in body}}
    if "binary" in body:  # declares 3136 bytes, sends body["binary"]
        del spec["data"]
        spec["parameters"] = {"binary_data_size": 3136}
        header = json.dumps(request).encode()
        headers["Inference-Header-Content-Length"] = str(len(header))
        return header + bytes(body["binary"])
    if "header_length" in body:
        headers["Inference-Header-Content-Length"] = body["header_length"]
    return json.dumps(request).encode()


def _post(server: str, body: bytes, headers: dict) -> tuple[int, dict]:
    return _request(server, "POST", "/v2/models/mnist_mlp/infer", body, headers)


def _request(server: str, method: str, path: str, body: bytes, headers: dict) -> tuple[int, dict]:
    connection = http.client.HTTPConnection(server, timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()
