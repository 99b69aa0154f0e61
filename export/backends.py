"""Runtimes that compute the exported function: eager PyTorch, TorchScript, ONNX Runtime.

Each backend maps a float32 numpy batch (N x 1 x 28 x 28) to float32 probabilities (N x 10) on the
host, so every runtime is compared (and later benchmarked) through one signature. A backend that
cannot run here is returned with `skipped` set to the reason, never silently left out.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from export.head import INPUT_NAME, OUTPUT_NAME, SoftmaxHead
from export.to_torchscript import recorded_warnings

Run = Callable[[np.ndarray], np.ndarray]


@dataclass
class Backend:
    name: str  # "<runtime>-<device>", e.g. "ort-cpu", "torchscript-cuda"
    device: str  # "cpu" | "cuda"
    run: Run | None = None
    skipped: str | None = None  # why it cannot run here
    details: dict = field(default_factory=dict)  # providers, session options, recorded warnings


def disable_tf32() -> None:
    """Full-precision fp32 matmuls on CUDA, so GPU results are comparable with CPU ones."""
    torch.backends.cuda.matmul.fp32_precision = "ieee"


def eager(head: SoftmaxHead, device: torch.device) -> Backend:
    module = copy.deepcopy(head).to(device).eval()  # one copy per device: .to() moves in place
    return Backend(f"eager-{device.type}", device.type, _torch_runner(module, device))


def torchscript(path: Path, device: torch.device) -> Backend:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = torch.jit.load(str(path), map_location=device).eval()
    return Backend(
        f"torchscript-{device.type}",
        device.type,
        _torch_runner(module, device),
        details={"warnings": recorded_warnings(caught)},
    )


def _torch_runner(module: torch.nn.Module, device: torch.device) -> Run:
    @torch.inference_mode()
    def run(images: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(images).to(device)).cpu().numpy()  # .cpu() synchronises

    return run


def onnxruntime(path: Path, device: torch.device) -> Backend:
    """An ORT session; on CUDA it must really run on the CUDA provider (TF32 off) or it is skipped."""
    if device.type == "cuda":
        cuda_options = {"device_id": str(device.index or 0), "use_tf32": "0"}
        providers = [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), providers=providers)
    name = f"ort-{device.type}"
    details = {"providers": session.get_providers(), "provider_options": session.get_provider_options()}
    expected = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    if session.get_providers()[0] != expected:
        reason = (
            f"{expected} did not load (session providers {session.get_providers()}, "
            f"onnxruntime {ort.__version__} offers {ort.get_available_providers()})"
        )
        return Backend(name, device.type, skipped=reason, details=details)

    def run(images: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]

    return Backend(name, device.type, run, details=details)


def onnx_io(path: Path) -> dict[str, list]:
    """Names, element types and shapes of the ONNX model's inputs and outputs, as ORT sees them."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return {
        "inputs": [[i.name, i.type, i.shape] for i in session.get_inputs()],
        "outputs": [[o.name, o.type, o.shape] for o in session.get_outputs()],
    }


def all_backends(head: SoftmaxHead, torchscript_path: Path, onnx_path: Path, devices: list[torch.device]) -> list[Backend]:
    """Eager, TorchScript and ORT on each device, CPU first."""
    backends = []
    for device in devices:
        backends += [eager(head, device), torchscript(torchscript_path, device), onnxruntime(onnx_path, device)]
    return backends
