"""bench.suites.cuda_backends: skipped with a reason without CUDA; on a GPU, graph replay matches eager and
TF32 stays scoped to its own calls. A tiny random MLP, not real MNIST: these tests exercise the
mechanism (capture, replay, flag restore), not accuracy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.suites import cuda_backends
from export.backends import disable_tf32, eager
from export.head import SoftmaxHead
from pipeline.model import MLP

CUDA = torch.device("cuda")


def tiny_head() -> SoftmaxHead:
    torch.manual_seed(0)
    return SoftmaxHead(MLP(in_features=784, hidden=(32, 16), num_classes=10)).eval()


def images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 28, 28), dtype=np.float32)


def builders(onnx_path):
    return {
        "eager-cudagraph": lambda d: cuda_backends.eager_cuda_graph(tiny_head(), d),
        "eager-tf32": lambda d: cuda_backends.eager_tf32(tiny_head(), d),
        "ort-cudagraph": lambda d: cuda_backends.ort_cuda_graph(onnx_path, d),
    }


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA path")
@pytest.mark.parametrize("which", ["eager-cudagraph", "eager-tf32", "ort-cudagraph"])
@pytest.mark.parametrize("device", [CUDA, torch.device("cpu")])
def test_skipped_without_cuda(which, device, tmp_path):
    backend = builders(tmp_path / "never-read.onnx")[which](device)  # skipped before the file is read
    assert backend.skipped and "CUDA" in backend.skipped
    assert backend.run is None and backend.prepare is None
    assert backend.device == "cuda" and backend.name.endswith("-cuda")


def test_all_cuda_backends_names(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("names only checked on the no-CUDA path (the GPU path needs an ONNX file)")
    names = [b.name for b in cuda_backends.all_cuda_backends(tiny_head(), tmp_path / "x.onnx", CUDA)]
    assert names == ["eager-cudagraph-cuda", "eager-tf32-cuda", "ort-cudagraph-fp32-cuda"]


@pytest.fixture
def cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    disable_tf32()
    return CUDA


@pytest.mark.gpu
def test_graph_replay_matches_eager(cuda):
    head, batch = tiny_head(), images(64, seed=1)
    reference = eager(head, cuda).run(batch)
    backend = cuda_backends.eager_cuda_graph(head, cuda)
    assert backend.skipped is None
    np.testing.assert_allclose(backend.prepare(batch)().cpu().numpy(), reference, rtol=0, atol=1e-6)
    np.testing.assert_allclose(backend.run(batch), reference, rtol=0, atol=1e-6)
    other = images(64, seed=2)  # same shape, new input: replay reads the copied-in batch
    np.testing.assert_allclose(backend.run(other), eager(head, cuda).run(other), rtol=0, atol=1e-6)


@pytest.mark.gpu
def test_tf32_is_scoped_to_the_call(cuda):
    backend = cuda_backends.eager_tf32(tiny_head(), cuda)
    backend.prepare(images(8, seed=3))()
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert backend.run(images(8, seed=4)).shape == (8, 10)
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"


@pytest.mark.gpu
def test_ort_graph_replay_matches_eager(cuda, tmp_path):
    head, path = tiny_head(), tmp_path / "tiny.onnx"
    torch.onnx.export(head, (torch.rand(4, 1, 28, 28),), str(path), dynamo=True, input_names=["image"],
                      output_names=["probs"], dynamic_shapes=({0: torch.export.Dim("batch")},))
    backend = cuda_backends.ort_cuda_graph(path, cuda)
    if backend.skipped is not None:
        pytest.skip(backend.skipped)
    batch, other = images(64, seed=5), images(64, seed=6)
    reference = eager(head, cuda)
    np.testing.assert_allclose(backend.prepare(batch)().cpu().numpy(), reference.run(batch), rtol=0, atol=1e-6)
    np.testing.assert_allclose(backend.run(other), reference.run(other), rtol=0, atol=1e-6)
    np.testing.assert_allclose(backend.run(batch), reference.run(batch), rtol=0, atol=1e-6)
