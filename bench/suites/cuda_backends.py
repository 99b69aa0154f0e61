"""GPU fast paths for the inference benchmark: how much of a small MLP's GPU latency is launch overhead.

At MNIST batch sizes the softmax head is five small GEMMs, so a GPU call is dominated by the CPU
launching kernels, not by the kernels. These backends measure what removing that costs buys:

- `eager_cuda_graph`: the eager head captured once per batch shape into a torch.cuda.CUDAGraph and
  replayed (one launch per call instead of about a dozen); fp32, TF32 off.
- `eager_tf32`: plain eager with TF32 matmuls allowed inside its own calls only, to show what the
  reduced-precision tensor-core path gains (and, through `run`, what it costs in parity).
- `ort_cuda_graph`: ONNX Runtime's CUDA provider with its own CUDA-graph capture (enable_cuda_graph).

Each returns an `export.backends.Backend` like the standard ones (`prepare` gives a zero-argument call
that runs once on a device-resident batch and synchronises CUDA). Where one cannot run here (no CUDA,
the provider did not load, ORT refused to capture) it is returned skipped with the reason: it never
raises for a missing GPU and never falls back to the CPU.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from export.backends import Backend, disable_tf32, onnx_io
from export.head import SoftmaxHead
from handoff.contract import OUTPUT_NAME
from handoff.errors import first_line
from handoff.ort_options import pinned, session_options

WARMUP_ITERATIONS = 3  # eager runs on a side stream before capture, as PyTorch's CUDA-graph notes do


def _no_cuda(device: torch.device) -> str | None:
    if device.type != "cuda":
        return f"needs a CUDA device, got {device}"
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None


# --- eager PyTorch, captured into a CUDA graph ------------------------------------------------------

def _capture(module: torch.nn.Module, device: torch.device, shape: tuple[int, ...]):
    """(static input, static output, graph) for one batch shape; new inputs go into the static input."""
    disable_tf32()  # the captured GEMMs are chosen now: keep them full fp32
    static_in = torch.zeros(shape, dtype=torch.float32, device=device)
    with torch.inference_mode():
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):  # warm-up (cuBLAS handles, allocator) outside the capture
            for _ in range(WARMUP_ITERATIONS):
                module(static_in)
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = module(static_in)
    torch.cuda.synchronize(device)
    return static_in, static_out, graph


def eager_cuda_graph(head: SoftmaxHead, device: torch.device) -> Backend:
    """`prepare` captures a graph for its batch's shape; `run` (parity) replays a graph kept per shape,
    so the parity gate checks the replayed numbers, not a plain eager run."""
    name, details = "eager-cudagraph-cuda", {"capture": "torch.cuda.CUDAGraph per batch shape", "tf32": False}
    if (reason := _no_cuda(device)) is not None:
        return Backend(name, "cuda", skipped=reason, details=details)
    module = copy.deepcopy(head).to(device).eval()
    graphs: dict[tuple[int, ...], tuple] = {}

    def run(images: np.ndarray) -> np.ndarray:
        if images.shape not in graphs:
            graphs[images.shape] = _capture(module, device, images.shape)
        static_in, static_out, graph = graphs[images.shape]
        static_in.copy_(torch.from_numpy(images))
        graph.replay()
        return static_out.cpu().numpy()  # .cpu() synchronises and copies out of the graph's buffer

    def prepare(images: np.ndarray) -> Callable[[], object]:
        static_in, static_out, graph = _capture(module, device, images.shape)  # its own buffers and graph
        static_in.copy_(torch.from_numpy(images))
        torch.cuda.synchronize(device)

        def call() -> object:
            graph.replay()
            torch.cuda.synchronize(device)
            return static_out

        call.static_input = static_in  # the graph reads it by address and does not own it: keep it alive
        return call

    return Backend(name, "cuda", run, prepare, details=details)


# --- eager PyTorch with TF32 matmuls ------------------------------------------------------------------

def _tf32_forward(module: torch.nn.Module, inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
    # TF32 is scoped to this backend's own calls: everywhere else (every other backend, the parity
    # gate's references) matmuls stay full fp32 ("ieee"), so the flag is restored even on error.
    torch.backends.cuda.matmul.fp32_precision = "tf32"
    try:
        with torch.inference_mode():
            out = module(inputs)
        torch.cuda.synchronize(device)
    finally:
        disable_tf32()
    return out


def eager_tf32(head: SoftmaxHead, device: torch.device) -> Backend:
    """Eager with TF32 on inside each call; `run` uses TF32 too, so parity reports its real error.
    Timed calls include two flag writes (microseconds; negligible next to a CUDA launch + sync)."""
    name, details = "eager-tf32-cuda", {"tf32": True}
    if (reason := _no_cuda(device)) is not None:
        return Backend(name, "cuda", skipped=reason, details=details)
    module = copy.deepcopy(head).to(device).eval()

    def run(images: np.ndarray) -> np.ndarray:
        return _tf32_forward(module, torch.from_numpy(images).to(device), device).cpu().numpy()

    def prepare(images: np.ndarray) -> Callable[[], object]:
        inputs = torch.from_numpy(images).to(device)
        return lambda: _tf32_forward(module, inputs, device)

    return Backend(name, "cuda", run, prepare, details=details)


# --- ONNX Runtime's CUDA provider with CUDA graphs ----------------------------------------------------

def ort_cuda_graph(path: Path, device: torch.device, variant: str = "fp32") -> Backend:
    """ORT CUDA EP with enable_cuda_graph: one graph per session (gpu_graph_id left at its default) with
    fixed I/O addresses and shapes, so each batch shape gets its own session I/O-bound to torch-owned
    CUDA buffers, and new inputs are copied into the bound input buffer. `run` keeps one per shape."""
    name = f"ort-cudagraph-{variant}-cuda"
    cuda_options = {"device_id": str(device.index or 0), "use_tf32": "0", "enable_cuda_graph": "1"}
    providers = [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"]
    record = pinned(None)
    options = session_options(record)
    details = {"variant": variant, "requested_provider_options": cuda_options, "session_options": record,
               "capture": "ORT CUDA graph, one InferenceSession per batch shape"}
    if (reason := _no_cuda(device)) is not None:
        return Backend(name, "cuda", skipped=reason, details=details)
    classes = onnx_io(path)["outputs"][0][2][1]  # raises PipelineError for a file that is not ONNX at all

    def new_session() -> ort.InferenceSession:
        # enable_fallback=0: ORT's Python wrapper otherwise retries a failed CUDA session on the CPU
        # provider (only printing "EP Error"), which would time the CPU under this backend's name.
        return ort.InferenceSession(str(path), options, providers=providers, enable_fallback=0)

    try:
        probe = new_session()
    except Exception as err:  # e.g. "cannot use the graph capture feature": a node not on the CUDA EP
        return Backend(name, "cuda", skipped=f"ORT refused a CUDA-graph session: {first_line(err)}", details=details)
    details.update(providers=probe.get_providers(), provider_options=probe.get_provider_options())
    if probe.get_providers()[0] != "CUDAExecutionProvider":
        reason = (f"CUDAExecutionProvider did not load (session providers {probe.get_providers()}, "
                  f"onnxruntime {ort.__version__} offers {ort.get_available_providers()})")
        return Backend(name, "cuda", skipped=reason, details=details)
    input_name = probe.get_inputs()[0].name
    del probe

    def bound(shape: tuple[int, ...]):
        """A session for `shape`, bound to its own CUDA input and output buffers (kept alive with it)."""
        session = new_session()
        inputs = torch.zeros(shape, dtype=torch.float32, device=device)
        outputs = torch.empty((shape[0], classes), dtype=torch.float32, device=device)
        binding = session.io_binding()
        binding.bind_input(input_name, "cuda", device.index or 0, np.float32, tuple(inputs.shape), inputs.data_ptr())
        binding.bind_output(OUTPUT_NAME, "cuda", device.index or 0, np.float32, tuple(outputs.shape), outputs.data_ptr())
        return session, binding, inputs, outputs

    def replay(entry, images: np.ndarray) -> torch.Tensor:
        session, binding, inputs, outputs = entry
        inputs.copy_(torch.from_numpy(images))  # same address the graph reads; synchronous copy
        # First call: ORT's warm-up run(s), the capture and a replay. The graph belongs to the calling
        # thread (ORT's per-thread CUDA context), so capture and timed calls share one thread.
        session.run_with_iobinding(binding)
        torch.cuda.synchronize(device)
        return outputs

    sessions: dict[tuple[int, ...], tuple] = {}

    def run(images: np.ndarray) -> np.ndarray:
        if images.shape not in sessions:
            sessions[images.shape] = bound(images.shape)
        return replay(sessions[images.shape], images).cpu().numpy()

    def prepare(images: np.ndarray) -> Callable[[], object]:
        session, binding, _, outputs = entry = bound(images.shape)
        replay(entry, images)  # captures here, not in the first timed call

        def call() -> object:
            session.run_with_iobinding(binding)
            torch.cuda.synchronize(device)
            return outputs

        call.bound = entry  # ORT holds raw pointers only: the input buffer must live as long as the call
        return call

    return Backend(name, "cuda", run, prepare, details=details)


def all_cuda_backends(head: SoftmaxHead, onnx_path: Path, device: torch.device) -> list[Backend]:
    """The three GPU fast paths (each skipped with its reason where it cannot run)."""
    return [eager_cuda_graph(head, device), eager_tf32(head, device), ort_cuda_graph(onnx_path, device)]
