"""The peers measured beside our ONNX artifacts: OpenVINO reading the same ONNX files, and
torch.compile (Inductor) on the eager model. Each is an ordinary `export.backends.Backend`, with
its version and the settings it ran with in `details`; one that cannot run here is skipped with
the reason.

OpenVINO runs with its own defaults for this CPU (as a user gets it), with the latency hint and
the bench's thread count: on CPUs with native bf16 its default inference precision is bf16, so
it computes a slightly different function; the bench reports its agreement with float32. Where
bf16 is not native (or capped off) it runs f32, as it would choose on such a CPU.
"""

from __future__ import annotations

import copy
import getpass
import importlib.metadata
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from export.backends import Backend, torch_module
from export.head import SoftmaxHead
from pipeline.placement import native_bf16


def openvino(path: Path, variant: str, threads: int) -> Backend:
    name = f"openvino-{variant}-cpu"
    try:
        import openvino as ov
    except ImportError as err:
        return Backend(name, "cpu", skipped=f"openvino is not installed ({err}); `pip install -e '.[peers]'`")
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    native, why = native_bf16(torch.device("cpu"))
    if not native:
        # OpenVINO picks bf16 from the CPU's flags alone; under an ISA cap (ONEDNN_MAX_CPU_ISA, e.g.
        # `make test-no-bf16`) its oneDNN then has no bf16 kernel and fails. f32 is what it picks
        # itself on a CPU without bf16.
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = ov.Core().compile_model(str(path), "CPU", config)

    def run(inputs: np.ndarray) -> np.ndarray:
        return np.array(compiled(inputs)[0], dtype=np.float32)

    def prepare(inputs: np.ndarray) -> Callable[[], object]:
        request = compiled.create_infer_request()
        inputs = np.ascontiguousarray(inputs)

        def call() -> object:  # shared buffers: no copy in or out, the cheapest call OpenVINO offers
            return request.infer({0: inputs}, share_inputs=True, share_outputs=True)

        return call

    details = {"variant": variant, "openvino": ov.__version__, **{k: str(v) for k, v in config.items()},
               "inference_precision": str(compiled.get_property("INFERENCE_PRECISION_HINT")), "native_bf16": why}
    return Backend(name, "cpu", run, prepare, details=details)


def compiled(head: SoftmaxHead, device: torch.device) -> Backend:
    """torch.compile with Inductor's defaults; dynamic=False, so each batch size gets its own
    specialised kernels (compiled during the bench's warm-up rounds, never timed)."""
    _separate_inductor_cache_under_isa_cap()
    module = torch.compile(copy.deepcopy(head).to(device).eval(), dynamic=False)
    details = {"variant": "fp32", "torch": str(torch.__version__), "compiler": "inductor", "dynamic": False,
               "triton": package_version("triton") if device.type == "cuda" else None}
    return torch_module(f"compiled-{device.type}", module, device, details)


def _separate_inductor_cache_under_isa_cap() -> None:
    """Under ATEN_CPU_CAPABILITY (e.g. `make test-no-bf16`), give Inductor a cache of its own.

    Inductor's on-disk cache key does not include that cap: kernels compiled without it were served
    under it and computed wrong probabilities (measured here: max error 0.94 against eager, test
    accuracy 39.8%; with a fresh cache, 1.5e-8). Set before the first compile, which reads it."""
    capped = os.environ.get("ATEN_CPU_CAPABILITY")
    if not capped:
        return
    suffix = f"-aten-{capped.lower()}"
    # Inductor itself writes its default into TORCHINDUCTOR_CACHE_DIR once used, and subprocesses
    # inherit it: so suffix whatever is there rather than only filling in a missing value.
    user = re.sub(r"\W", "_", getpass.getuser())
    base = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or os.path.join(tempfile.gettempdir(), f"torchinductor_{user}")
    if not base.endswith(suffix):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = base + suffix


def package_version(package: str) -> str | None:
    """An installed distribution's version, None if absent."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
