"""mlp-serve --repository as users meet it: MNIST and Otto in one process over TLS, spoken to by
tritonclient (HTTP and gRPC, ssl=True) through Triton's repository extension, restricted APIs
refused without their header, versions published and loaded while clients hammer the model (no
request lost, no class wrong), a broken version refused while the old one serves, and the bound on
open connections."""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from tritonclient.utils import InferenceServerException

from conftest import free_port, running_server
from deploy.bundle import load_bundle
from deploy.model_repository import publish

pytestmark = pytest.mark.xdist_group("servers")  # one worker: ports are picked free, then bound
KEY = ("x-admin-key", "s3cret")  # the --restricted-header pair
ADMIN = {KEY[0]: KEY[1]}


@pytest.fixture(scope="module")
def tls_pair(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made here (openssl, as a user would)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def repository(tmp_path_factory, mnist_bundle, otto_bundle) -> Path:
    root = tmp_path_factory.mktemp("models")
    assert publish(mnist_bundle, root, "mnist_mlp") == ("1", True) and publish(otto_bundle, root, "otto_mlp") == ("1", True)
    assert publish(mnist_bundle, root, "mnist_mlp") == ("1", False)  # the same bundle again: nothing new
    assert publish(mnist_bundle, root, "mnist_mlp", again=True) == ("2", True)  # unless asked (the hot-reload bench)
    shutil.rmtree(root / "mnist_mlp" / "2")
    return root


@pytest.fixture(scope="module")
def server(repository, tls_pair):
    cert, key = tls_pair
    grpc_port = free_port()
    with running_server(None, "--tls-cert", str(cert), "--tls-key", str(key), "--restricted-api", "repository,statistics,metrics",
                        "--restricted-header", "=".join(KEY), grpc_port=grpc_port, repository=repository) as address:
        yield address, f"127.0.0.1:{grpc_port}"


@pytest.fixture(scope="module")
def clients(server, tls_pair):
    http_address, grpc_address = server
    cert = str(tls_pair[0])
    http_client = triton_http.InferenceServerClient(http_address, ssl=True, ssl_options={"ca_certs": cert})
    grpc_client = triton_grpc.InferenceServerClient(grpc_address, ssl=True, root_certificates=cert)
    yield http_client, grpc_client
    http_client.close()
    grpc_client.close()


@pytest.fixture(scope="module")
def images(mnist, mnist_bundle):
    inputs = mnist.held_out.inputs[:64].numpy()
    return inputs, load_bundle(mnist_bundle).predict(inputs).argmax(1)


def infer_http(client, model: str, inputs: np.ndarray, version: str = "", input_name: str = "image") -> tuple[str, np.ndarray]:
    tensor = triton_http.InferInput(input_name, list(inputs.shape), "FP32")
    tensor.set_data_from_numpy(inputs)
    result = client.infer(model, [tensor], model_version=version)
    return result.get_response()["model_version"], result.as_numpy("probs")


def infer_grpc(client, model: str, inputs: np.ndarray, version: str = "", input_name: str = "image") -> tuple[str, np.ndarray]:
    tensor = triton_grpc.InferInput(input_name, list(inputs.shape), "FP32")
    tensor.set_data_from_numpy(inputs)
    result = client.infer(model, [tensor], model_version=version)
    return result.get_response().model_version, result.as_numpy("probs")


def test_mnist_and_otto_side_by_side_over_tls_with_restricted_apis(server, clients, tls_pair, images, otto_bundle):
    http_client, grpc_client = clients
    inputs, classes = images
    assert infer_http(http_client, "mnist_mlp", inputs)[1].argmax(1).tolist() == classes.tolist()
    assert infer_grpc(grpc_client, "mnist_mlp", inputs, "1")[1].argmax(1).tolist() == classes.tolist()
    otto = load_bundle(otto_bundle)
    rows = np.zeros((3, *otto.contract.input_shape), np.float32)
    np.testing.assert_allclose(infer_grpc(grpc_client, "otto_mlp", rows, input_name=otto.contract.input_name)[1], otto.predict(rows), atol=1e-6)
    assert [m.name for m in grpc_client.get_model_metadata("otto_mlp").outputs] == ["probs"]
    # repository, statistics and metrics need the header; inference and health do not
    with pytest.raises(InferenceServerException, match="403.*restricted"):
        http_client.get_model_repository_index()
    with pytest.raises(InferenceServerException, match="PERMISSION_DENIED"):
        grpc_client.get_model_repository_index()
    with pytest.raises(InferenceServerException, match="PERMISSION_DENIED"):
        grpc_client.get_inference_statistics("mnist_mlp")
    with pytest.raises(InferenceServerException, match="403"):
        http_client.load_model("mnist_mlp", headers={KEY[0]: "wrong"})
    index = grpc_client.get_model_repository_index(headers=ADMIN, as_json=True)["models"]
    assert {(m["name"], m["version"], m["state"]) for m in index} == {("mnist_mlp", "1", "READY"), ("otto_mlp", "1", "READY")}
    stats = http_client.get_inference_statistics("mnist_mlp", headers=ADMIN)["model_stats"]
    assert [(s["name"], s["version"]) for s in stats] == [("mnist_mlp", "1")] and stats[0]["inference_count"] >= 128
    host, port = server[0].split(":")
    for headers, status in (({}, 403), (ADMIN, 200)):
        connection = http.client.HTTPSConnection(host, int(port), context=ssl.create_default_context(cafile=tls_pair[0]), timeout=10)
        connection.request("GET", "/metrics", headers=headers)
        response = connection.getresponse()
        body = response.read().decode()
        assert response.status == status, body
    assert 'mlp_inference_rows_total{model="otto_mlp",version="1"} 3.0' in body


def test_load_moves_to_the_new_version_and_a_broken_one_is_refused(repository, clients, images, mnist_bundle):
    http_client, grpc_client = clients
    inputs, classes = images
    assert publish(mnist_bundle, repository, "mnist_mlp") == ("1", False)
    shutil.copytree(repository / "mnist_mlp" / "1", repository / "mnist_mlp" / "2")  # a new version, as a user would copy it
    grpc_client.load_model("mnist_mlp", headers=ADMIN)
    version, probs = infer_http(http_client, "mnist_mlp", inputs)
    assert version == "2" and probs.argmax(1).tolist() == classes.tolist()
    assert http_client.get_model_metadata("mnist_mlp")["versions"] == ["2"]  # latest: 1, Triton's default policy
    with pytest.raises(InferenceServerException, match="unknown version '1'"):
        infer_grpc(grpc_client, "mnist_mlp", inputs, "1")

    broken = repository / "mnist_mlp" / "3"
    shutil.copytree(repository / "mnist_mlp" / "2", broken)
    (broken / "model.onnx").write_bytes((broken / "model.onnx").read_bytes()[:-1] + b"\0")  # one byte changed
    with pytest.raises(InferenceServerException, match="failed to load 'mnist_mlp' version 3.*sha256"):
        http_client.load_model("mnist_mlp", headers=ADMIN)
    assert infer_grpc(grpc_client, "mnist_mlp", inputs)[0] == "2"  # the old version keeps serving
    index = {(m["name"], m["version"]): m for m in http_client.get_model_repository_index(headers=ADMIN)}
    assert index[("mnist_mlp", "3")]["state"] == "UNAVAILABLE" and "sha256" in index[("mnist_mlp", "3")]["reason"]
    assert index[("mnist_mlp", "2")]["state"] == "READY" and index[("mnist_mlp", "1")]["reason"] == "unloaded"
    shutil.rmtree(broken)

    (repository / "mnist_mlp" / "config.pbtxt").write_text("version_policy: { specific: { versions: [1, 2] } }\n")
    http_client.load_model("mnist_mlp", headers=ADMIN)
    assert grpc_client.get_model_metadata("mnist_mlp").versions == ["1", "2"]
    assert infer_http(http_client, "mnist_mlp", inputs, "1")[0] == "1" and infer_http(http_client, "mnist_mlp", inputs)[0] == "2"
    http_client.unload_model("mnist_mlp", headers=ADMIN)
    assert not http_client.is_model_ready("mnist_mlp") and http_client.is_model_ready("otto_mlp") and http_client.is_server_ready()
    with pytest.raises(InferenceServerException, match="unknown model 'mnist_mlp'"):
        infer_grpc(grpc_client, "mnist_mlp", inputs)
    (repository / "mnist_mlp" / "config.pbtxt").unlink()
    grpc_client.load_model("mnist_mlp", headers=ADMIN)
    assert infer_grpc(grpc_client, "mnist_mlp", inputs)[0] == "2"


def test_swaps_under_load_lose_no_request_and_answer_no_wrong_class(server, repository, tls_pair, images, mnist_bundle):
    """CLIENTS keep-alive HTTPS clients send binary batch-8 requests without a version while SWAPS new
    versions are published and loaded: every request answers 200 with the fp32 model's classes."""
    clients, swaps = 8, 4
    inputs, classes = images
    rows = inputs[:8]
    host, port = server[0].split(":")
    header = b'{"inputs":[{"name":"image","shape":[8,1,28,28],"datatype":"FP32","parameters":{"binary_data_size":%d}}],"parameters":{"binary_data_output":true}}' % rows.nbytes
    body = header + rows.tobytes()
    headers = {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}
    stop, outcomes, lock = threading.Event(), {"ok": 0, "failed": [], "wrong": 0, "versions": set()}, threading.Lock()

    def client() -> None:
        connection = http.client.HTTPSConnection(host, int(port), context=ssl.create_default_context(cafile=tls_pair[0]), timeout=30)
        while not stop.is_set():
            connection.request("POST", "/v2/models/mnist_mlp/infer", body, headers)
            response = connection.getresponse()
            answer = response.read()
            with lock:
                if response.status != 200:
                    outcomes["failed"].append((response.status, answer[:200]))
                    continue
                length = int(response.headers["Inference-Header-Content-Length"])
                probs = np.frombuffer(answer[length:], "<f4").reshape(8, 10)
                outcomes["ok"] += 1
                outcomes["wrong"] += int((probs.argmax(1) != classes[:8]).sum())
                outcomes["versions"].add(answer[:length].split(b'"model_version":"')[1].split(b'"')[0].decode())

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    http_client = triton_http.InferenceServerClient(server[0], ssl=True, ssl_options={"ca_certs": str(tls_pair[0])})
    try:
        for _ in range(swaps):
            time.sleep(0.3)
            before = outcomes["ok"]
            latest = max(int(v.name) for v in (repository / "mnist_mlp").iterdir() if v.name.isdigit())
            shutil.copytree(repository / "mnist_mlp" / "1", repository / "mnist_mlp" / str(latest + 1))
            http_client.load_model("mnist_mlp", headers=ADMIN)
            assert outcomes["ok"] > before  # the clients were served while the new version loaded
        time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
        http_client.close()
    assert outcomes["failed"] == [] and outcomes["wrong"] == 0 and outcomes["ok"] > 50, outcomes
    assert len(outcomes["versions"]) >= swaps, outcomes["versions"]  # traffic moved with each swap


def test_connections_past_the_bound_are_answered_503_and_closed(mnist_bundle):
    with running_server(mnist_bundle, "--max-connections", "4") as address:
        host, port = address.split(":")
        held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(4)]  # stalled clients: no request
        time.sleep(0.2)
        extra = socket.create_connection((host, int(port)), timeout=10)
        answer = extra.recv(4096)
        assert answer.startswith(b"HTTP/1.1 503") and b"--max-connections" in answer and extra.recv(4096) == b""  # then closed
        held.pop().close()
        time.sleep(0.2)
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        connection.request("GET", "/v2/health/ready")
        assert connection.getresponse().status == 200  # a freed slot serves again
        for sock in held:
            sock.close()
