"""mlp-serve's gRPC side as users meet it: the official tritonclient.grpc against the real server (torch
blocked), and the generated stub for what that client does not send (typed contents)."""

from __future__ import annotations

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from conftest import MNIST_BUNDLE_MAX_BATCH, free_port, running_server
from deploy.bundle import load_bundle
from export.parity import ABS_TOL

# One worker runs these (pytest-xdist --dist loadgroup): their servers' ports are picked free, then bound.
pytestmark = pytest.mark.xdist_group("servers")


@pytest.fixture(scope="module")
def grpc_address(mnist_bundle):
    port = free_port()
    with running_server(mnist_bundle, grpc_port=port):
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def client(grpc_address):
    return triton_grpc.InferenceServerClient(grpc_address)


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("mnist_mlp") and client.is_model_ready("mnist_mlp", "1")
    assert not client.is_model_ready("mnist_mlp", "2") and not client.is_model_ready("other")
    assert {"binary_tensor_data", "statistics"} <= set(client.get_server_metadata().extensions)
    meta = client.get_model_metadata("mnist_mlp", as_json=True)
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": ["-1", "1", "28", "28"]}]
    assert meta["outputs"] == [{"name": "probs", "datatype": "FP32", "shape": ["-1", "10"]}]
    with pytest.raises(InferenceServerException) as unknown:
        client.get_model_metadata("other")
    assert unknown.value.status() == "StatusCode.NOT_FOUND"


def test_infer_matches_the_bundle_one_row_and_a_full_batch(client, mnist_bundle, mnist):
    images, labels = mnist.held_out.inputs[:500].numpy(), mnist.held_out.labels[:500].numpy()
    expected = load_bundle(mnist_bundle).predict(images)
    probs = []
    for start in range(0, len(images), MNIST_BUNDLE_MAX_BATCH):  # batches of 64, the last one shorter
        chunk = images[start:start + MNIST_BUNDLE_MAX_BATCH]
        tensor = triton_grpc.InferInput("image", list(chunk.shape), "FP32")
        tensor.set_data_from_numpy(chunk)
        result = client.infer("mnist_mlp", [tensor], request_id=f"r{start}")
        assert result.get_response().id == f"r{start}"
        probs.append(result.as_numpy("probs"))
    probs = np.concatenate(probs)
    np.testing.assert_allclose(probs, expected, rtol=0, atol=ABS_TOL)
    assert (probs.argmax(1) == labels).mean() >= 0.9


@pytest.mark.parametrize("shape, datatype, message", [
    ([1, 784], "FP32", "has shape [1, 784]"),
    ([1, 1, 28, 28], "INT32", "datatype 'INT32'"),
    ([MNIST_BUNDLE_MAX_BATCH + 1, 1, 28, 28], "FP32", "maximum batch"),
])
def test_bad_requests_are_invalid_argument(client, shape, datatype, message):
    tensor = triton_grpc.InferInput("image", shape, datatype)
    tensor.set_data_from_numpy(np.zeros(shape, np.float32 if datatype == "FP32" else np.int32))
    with pytest.raises(InferenceServerException) as refused:
        client.infer("mnist_mlp", [tensor])
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT" and message in refused.value.message()


def test_out_of_range_values_and_unknown_models(client):
    tensor = triton_grpc.InferInput("image", [1, 1, 28, 28], "FP32")
    tensor.set_data_from_numpy(np.full((1, 1, 28, 28), 2.0, np.float32))
    with pytest.raises(InferenceServerException, match="outside the model's range") as refused:
        client.infer("mnist_mlp", [tensor])
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    with pytest.raises(InferenceServerException, match="unknown model 'other'") as unknown:
        client.infer("other", [tensor])
    assert unknown.value.status() == "StatusCode.NOT_FOUND"


def test_typed_contents_equal_raw_contents(grpc_address, mnist_bundle, mnist):
    rows = mnist.held_out.inputs[:3].numpy()
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(grpc_address))
    tensor = pb.ModelInferRequest.InferInputTensor(name="image", datatype="FP32", shape=rows.shape,
                                                   contents=pb.InferTensorContents(fp32_contents=rows.ravel().tolist()))
    response = stub.ModelInfer(pb.ModelInferRequest(model_name="mnist_mlp", inputs=[tensor]))
    probs = np.frombuffer(response.raw_output_contents[0], dtype="<f4").reshape(list(response.outputs[0].shape))
    np.testing.assert_allclose(probs, load_bundle(mnist_bundle).predict(rows), rtol=0, atol=ABS_TOL)
    short = pb.ModelInferRequest.InferInputTensor(name="image", datatype="FP32", shape=[1, 1, 28, 28],
                                                  contents=pb.InferTensorContents(fp32_contents=[0.0] * 10))
    with pytest.raises(grpc.RpcError) as refused:
        stub.ModelInfer(pb.ModelInferRequest(model_name="mnist_mlp", inputs=[short]))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "holds 10 values" in refused.value.details()


def test_statistics_count_what_was_inferred(client):
    before = client.get_inference_statistics("mnist_mlp").model_stats[0]
    tensor = triton_grpc.InferInput("image", [2, 1, 28, 28], "FP32")
    tensor.set_data_from_numpy(np.zeros((2, 1, 28, 28), np.float32))
    client.infer("mnist_mlp", [tensor])
    after = client.get_inference_statistics("mnist_mlp").model_stats[0]
    assert after.inference_count - before.inference_count == 2
    assert after.execution_count - before.execution_count == 1
    assert after.inference_stats.compute_infer.ns > before.inference_stats.compute_infer.ns


def test_the_methods_not_served_answer_unimplemented(grpc_address):
    stub = service_pb2_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(grpc_address))
    for call, request in [(stub.TraceSetting, pb.TraceSettingRequest()), (stub.ModelConfig, pb.ModelConfigRequest(name="mnist_mlp"))]:
        with pytest.raises(grpc.RpcError) as refused:
            call(request)
        assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED and "not served by mlp-serve" in refused.value.details()
