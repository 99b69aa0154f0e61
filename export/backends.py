"""Runtimes that compute the exported function: eager PyTorch, TorchScript, the ExportedProgram,
the AOTInductor package, ONNX Runtime.

Each backend maps a float32 numpy batch (N x <input shape>) to float32 probabilities (N x <classes>) on the
host (`run`, for the parity gate), and can `prepare` a batch for benchmarking: the input is moved to
the backend's device once, and the returned callable runs the model on it and waits for the result
(CUDA synchronised; ORT on CUDA through I/O binding of device-resident tensors). A backend that
cannot run here is returned with `skipped` set to the reason, never silently left out.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from export.aoti_package import DEVICE_KEY, open_package, package_metadata
from export.head import SoftmaxHead
from export.recorded_warnings import recording_warnings
from handoff import artifacts
from handoff.contract import OUTPUT_NAME
from handoff.errors import PipelineError, first_line
from handoff.ort_options import SessionPool, bound_call, describe, pinned, session_options

Run = Callable[[np.ndarray], np.ndarray]
Prepare = Callable[[np.ndarray], Callable[[], object]]


@dataclass
class Backend:
    name: str  # "<runtime>-<device>", e.g. "ort-cpu", "torchscript-cuda"
    device: str  # "cpu" | "cuda"
    run: Run | None = None
    prepare: Prepare | None = None
    skipped: str | None = None  # why it cannot run here
    details: dict = field(default_factory=dict)  # providers, session options, recorded warnings


def disable_tf32() -> None:
    """Full-precision fp32 matmuls on CUDA, so GPU results are comparable with CPU ones."""
    torch.backends.cuda.matmul.fp32_precision = "ieee"


def eager(head: SoftmaxHead, device: torch.device) -> Backend:
    module = copy.deepcopy(head).to(device).eval()  # one copy per device: .to() moves in place
    return torch_module(f"eager-{device.type}", module, device)


def torchscript(path: Path, device: torch.device) -> Backend:
    with recording_warnings() as recorded:
        try:
            module = torch.jit.load(str(path), map_location=device).eval()
        except Exception as err:  # a corrupt archive raises several types; all mean "unusable"
            raise PipelineError(f"{path}: not a loadable TorchScript file ({first_line(err)})") from err
    return torch_module(f"torchscript-{device.type}", module, device, details={"warnings": recorded})


def exported_program(path: Path, device: torch.device) -> Backend:
    """`model.pt2` as torch.export.load gives it back, on `device` (no eval(): the head has no
    dropout or batch norm, and an exported module has no train mode to leave)."""
    with recording_warnings() as recorded:
        try:
            module = torch.export.load(str(path)).module().to(device)
        except Exception as err:  # a corrupt or foreign archive raises several types: all mean "unusable"
            raise PipelineError(f"{path}: not a loadable ExportedProgram ({first_line(err)})") from err
    return torch_module(f"exported-{device.type}", module, device, details={"warnings": recorded})


def aoti(path: Path, device: torch.device) -> Backend:
    """`model.aoti.pt2` through AOTInductor's C++ runner (export/aoti_package.py), called on a
    one-tensor list: the public wrapper's pytree flattening left out, a cost a C++ caller does not
    pay. A package compiled for another device is skipped; one compiled for a CPU with instructions
    this one lacks is refused."""
    name = f"aoti-{device.type}"
    metadata = package_metadata(path)
    if metadata.get(DEVICE_KEY) != device.type:
        return Backend(name, device.type, skipped=f"{path.name} is compiled for {metadata.get(DEVICE_KEY)}, not {device.type}")
    with recording_warnings() as recorded:
        try:
            module = open_package(path, metadata)
        except PipelineError:
            raise  # refused: another CPU's package
        except Exception as err:  # the loader raises RuntimeError for any unusable package
            raise PipelineError(f"{path}: not a loadable AOTInductor package ({first_line(err)})") from err
    return torch_module(name, module, device, details={"warnings": recorded, "cpu_isa": metadata.get("AOTI_CPU_ISA")})


def torch_module(name: str, module: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                 details: dict | None = None) -> Backend:
    """A backend for any torch module (or callable) already on `device` in eval mode (eager,
    TorchScript, ExportedProgram, AOTInductor, torch.compile): `run` copies the result back to the
    host, a prepared call synchronises CUDA."""

    @torch.inference_mode()
    def run(inputs: np.ndarray) -> np.ndarray:
        return module(torch.from_numpy(inputs).to(device)).cpu().numpy()  # .cpu() synchronises

    def prepare(inputs: np.ndarray) -> Callable[[], object]:
        on_device = torch.from_numpy(inputs).to(device)

        @torch.inference_mode()
        def call() -> object:
            out = module(on_device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return out

        return call

    return Backend(name, device.type, run, prepare, details=details or {})


def _session(path: Path, options: ort.SessionOptions, providers: list) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(str(path), options, providers=providers)
    except Exception as err:  # ORT raises its own types (InvalidProtobuf, Fail, ...): all mean "unusable"
        raise PipelineError(f"{path}: not a loadable ONNX model ({first_line(err)})") from err


def onnxruntime(path: Path, device: torch.device, threads: int | None = None, variant: str = "fp32") -> Backend:
    """An ORT session with ORT's default options (threads pinned when given); on CUDA it must
    really run on the CUDA provider (TF32 off) or it is skipped. Named ort-<device> for float32,
    ort-<variant>-<device> for another variant's file."""
    if device.type == "cuda":
        cuda_options = {"device_id": str(device.index or 0), "use_tf32": "0"}
        providers = [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    record = pinned(threads)
    session = _session(path, session_options(record), providers)
    name = f"ort-{device.type}" if variant == "fp32" else f"ort-{variant}-{device.type}"
    details = {
        "variant": variant,
        "providers": session.get_providers(),
        "provider_options": session.get_provider_options(),
        "session_options": record,
    }
    expected = "CUDAExecutionProvider" if device.type == "cuda" else "CPUExecutionProvider"
    if session.get_providers()[0] != expected:
        reason = (
            f"{expected} did not load (session providers {session.get_providers()}, "
            f"onnxruntime {ort.__version__} offers {ort.get_available_providers()})"
        )
        return Backend(name, device.type, skipped=reason, details=details)

    input_name = session.get_inputs()[0].name  # the parity gate checks it against the dataset's contract

    def run(inputs: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {input_name: inputs})[0]

    prepare = _ort_cuda_preparer(session, device) if device.type == "cuda" else _ort_cpu_preparer(session)
    return Backend(name, device.type, run, prepare, details=details)


def _ort_cpu_preparer(session: ort.InferenceSession) -> Prepare:
    def prepare(inputs: np.ndarray) -> Callable[[], object]:
        feeds = {session.get_inputs()[0].name: np.ascontiguousarray(inputs)}
        return lambda: session.run([OUTPUT_NAME], feeds)

    return prepare


def _ort_cuda_preparer(session: ort.InferenceSession, device: torch.device) -> Prepare:
    """I/O binding to torch-owned CUDA buffers: the timed call moves no data between host and GPU."""
    classes = session.get_outputs()[0].shape[1]

    def prepare(images: np.ndarray) -> Callable[[], object]:
        inputs = torch.from_numpy(images).to(device)
        outputs = torch.empty((len(images), classes), dtype=torch.float32, device=device)
        binding = session.io_binding()
        binding.bind_input(session.get_inputs()[0].name, "cuda", device.index or 0, np.float32, tuple(inputs.shape), inputs.data_ptr())
        binding.bind_output(OUTPUT_NAME, "cuda", device.index or 0, np.float32, tuple(outputs.shape), outputs.data_ptr())

        def call() -> object:
            session.run_with_iobinding(binding)
            torch.cuda.synchronize(device)
            return outputs

        call.keep_alive = inputs  # ORT holds only the pointer: the tensor must outlive the binding
        return call

    return prepare


def onnx_io(path: Path) -> dict[str, list]:
    """Names, element types and shapes of the ONNX model's inputs and outputs, as ORT sees them."""
    session = _session(path, ort.SessionOptions(), ["CPUExecutionProvider"])
    return {
        "inputs": [[i.name, i.type, i.shape] for i in session.get_inputs()],
        "outputs": [[o.name, o.type, o.shape] for o in session.get_outputs()],
    }


def all_backends(head: SoftmaxHead, out: Path, torch_files: list[str], devices: list[torch.device]) -> list[Backend]:
    """Eager, each torch artifact in `torch_files` (TorchScript where this torch still writes it, the
    ExportedProgram, the AOTInductor package on its own device) and ORT, on each device, CPU first."""
    loaders = {artifacts.TORCHSCRIPT: torchscript, artifacts.EXPORTED_PROGRAM: exported_program, artifacts.AOTI_PACKAGE: aoti}
    backends = []
    for device in devices:
        backends += [eager(head, device), *(loaders[name](out / name, device) for name in torch_files),
                     onnxruntime(out / artifacts.ONNX, device)]
    return backends


def onnxruntime_tuned(path: Path, variant: str, tuned: dict[str, dict], kind: str = "tuned") -> Backend:
    """ORT on the CPU with the session options `python -m export.tune` chose for the batch size
    nearest each prepared batch (ORT's defaults where none were tuned: `tuned` empty), one session
    per distinct record, called through `bound_call`: input and output bound once, no per-call
    allocation or feed dict. Named ort-<kind>-<variant>-cpu."""
    pool = SessionPool(path, tuned, lambda model, record: _session(model, session_options(record), ["CPUExecutionProvider"]))

    def run(inputs: np.ndarray) -> np.ndarray:
        session = pool.session_for(len(inputs))
        return session.run([OUTPUT_NAME], {session.get_inputs()[0].name: inputs})[0]

    def prepare(inputs: np.ndarray) -> Callable[[], object]:
        call, _ = bound_call(pool.session_for(len(inputs)), np.ascontiguousarray(inputs))
        return call

    pool.open_all()  # a file ORT cannot load fails here, not in the first timed call
    details = {"variant": variant, "tuned_options": {bs: describe(t["options"]) for bs, t in tuned.items()} or "ORT defaults (not tuned)"}
    return Backend(f"ort-{kind}-{variant}-cpu", "cpu", run, prepare, details=details)
