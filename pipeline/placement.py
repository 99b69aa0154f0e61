"""Where and how a training run computes, decided once, at the edge, from the flags and the
hardware, and printed once with the reasons (`Placement.summary`):

  device     `auto` takes CUDA when there is a GPU, else the CPU; `cuda`/`cuda:N` must really exist.
             Under torchrun each rank takes its own GPU (cuda:LOCAL_RANK).
  capture    `cuda-graph` replays each training step as a CUDA graph: it needs CUDA and one process.
  precision  the recipe's `auto`, `bfloat16` or `off`:
               - `off`: float32 everywhere;
               - `bfloat16`: bf16 autocast for the training steps (master weights, loss, evaluation
                 and the saved model stay float32), even where bf16 is emulated, with a one-line
                 warning that it will be slow;
               - `auto`: bf16 only where the device runs it natively, else float32.

"Native bf16" means a CUDA GPU whose bf16 support is not emulated, or a CPU with AVX512-BF16 or AMX
whose oneDNN (the library behind bf16 matmuls on the CPU) is allowed to use them. Without those,
oneDNN converts bf16 to float32 and back around every product: 4-11x slower than float32 (measured:
one layer on AMD Zen 3; the fast recipe under ONEDNN_MAX_CPU_ISA=AVX2). PIPELINE_NO_NATIVE_BF16=1
makes any machine answer "not native", so both paths are tested everywhere; ONEDNN_MAX_CPU_ISA=AVX2
really stops oneDNN from using the bf16 instructions. Hardware never changes the recipe's semantics:
only which dtype the same steps compute in.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch

from handoff.errors import PipelineError
from pipeline.config import CAPTURES, PRECISIONS, check_choice
from pipeline.distributed import World

FORCE_NOT_NATIVE_ENV = "PIPELINE_NO_NATIVE_BF16"
# oneDNN ISA caps (ONEDNN_MAX_CPU_ISA) below AVX512_CORE_BF16: under them bf16 is emulated.
_ONEDNN_CAPS_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


@dataclass(frozen=True)
class Precision:
    requested: str  # what the recipe or PRECISION asked for: auto | bfloat16 | off
    dtype: str  # what the training steps compute in: "bfloat16" (autocast) or "float32"
    native: bool  # whether the device runs bf16 natively (whatever was chosen)
    reason: str  # one sentence: why this dtype

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.dtype == "bfloat16" else None


@dataclass(frozen=True)
class Placement:
    device: torch.device
    device_reason: str
    precision: Precision
    capture: str  # "off" | "cuda-graph"

    def summary(self) -> str:
        """The one line a run prints: each decision and why."""
        return (f"placement: {self.device} ({self.device_reason}); {self.precision.dtype} ({self.precision.reason}); "
                f"capture {self.capture}")


def resolve_placement(device: str, capture: str, precision: str, world: World) -> Placement:
    """DEVICE, CAPTURE and the recipe's precision against the hardware and the world of processes;
    a combination that cannot run is a PipelineError, before any file is touched."""
    chosen, why = _device(device)
    chosen = rank_device(chosen, world)
    check_choice("CAPTURE", capture, CAPTURES)
    if capture == "cuda-graph" and chosen.type != "cuda":
        raise PipelineError(f"CAPTURE=cuda-graph needs a CUDA device, but training runs on {chosen}; use CAPTURE=off")
    if world.distributed and capture != "off":
        raise PipelineError(f"CAPTURE={capture} runs in one process; use NPROC=1 with it")
    return Placement(chosen, why, resolve_precision(precision, chosen), capture)


def resolve_device(requested: str) -> torch.device:
    """'auto' takes CUDA when available, else CPU; 'cuda' or 'cuda:N' must really exist."""
    return _device(requested)[0]


def _device(requested: str) -> tuple[torch.device, str]:
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda"), f"auto: CUDA is available ({torch.cuda.get_device_name(0)})"
        return torch.device("cpu"), "auto: no CUDA device"
    if requested == "cpu":
        return torch.device("cpu"), "DEVICE=cpu"
    if requested == "cuda" or requested.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise PipelineError(
                f"DEVICE={requested} was asked for, but CUDA is not available "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}, "
                f"{torch.cuda.device_count()} GPUs visible); use DEVICE=cpu or DEVICE=auto"
            )
        device = torch.device(requested)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise PipelineError(f"DEVICE={requested}: only {torch.cuda.device_count()} GPUs visible")
        return device, f"DEVICE={requested}"
    raise PipelineError(f"unknown DEVICE={requested!r}; use auto, cpu, cuda or cuda:N")


def rank_device(device: torch.device, world: World) -> torch.device:
    """One GPU per rank on CUDA (cuda:LOCAL_RANK); fewer visible GPUs than local ranks is an error."""
    if not world.distributed or device.type != "cuda":
        return device
    if torch.cuda.device_count() < world.local_size:
        raise PipelineError(f"DEVICE=cuda with {world.local_size} processes on this node, but only "
                            f"{torch.cuda.device_count()} GPUs are visible: use NPROC={torch.cuda.device_count()} or fewer")
    return torch.device("cuda", world.local_rank)


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """(whether `device` runs bf16 natively, the evidence in words)."""
    if os.environ.get(FORCE_NOT_NATIVE_ENV) == "1":
        return False, f"{FORCE_NOT_NATIVE_ENV}=1 says to treat this machine as having no native bf16"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return True, f"{name} supports bf16 natively"
        return False, f"{name} has no native bf16"
    if device.type != "cpu":
        return False, f"no bf16 check for {device.type} devices"
    return _native_bf16_cpu()


def _native_bf16_cpu() -> tuple[bool, str]:
    has_avx512_bf16, has_amx = torch.cpu._is_avx512_bf16_supported(), torch.cpu._is_amx_tile_supported()
    if not (has_avx512_bf16 or has_amx):
        return False, f"this CPU has neither AVX512-BF16 nor AMX (ATen capability {torch.backends.cpu.get_cpu_capability()})"
    found = " and ".join(name for name, present in (("AVX512-BF16", has_avx512_bf16), ("AMX", has_amx)) if present)
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap in _ONEDNN_CAPS_WITHOUT_BF16:
        return False, f"the CPU has {found}, but ONEDNN_MAX_CPU_ISA={cap} stops oneDNN from using it"
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return False, f"the CPU has {found}, but this PyTorch build's oneDNN cannot use it"
    return True, f"the CPU has {found}, which oneDNN uses for bf16 matmuls"


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """The dtype the training steps use on `device`, and why; an emulated bf16 request warns."""
    native, evidence = native_bf16(device)
    if requested == "off":
        return Precision(requested, "float32", native, "PRECISION=off asks for float32")
    if requested == "auto":
        if native:
            return Precision(requested, "bfloat16", native, f"auto: {evidence}; bf16 autocast, float32 master weights")
        return Precision(requested, "float32", native, f"auto: {evidence}, so bf16 would be emulated and slow")
    check_choice("PRECISION", requested, PRECISIONS)  # what is left: bfloat16, or an unknown name
    if not native:
        print(f"warning: PRECISION=bfloat16 without native bf16 ({evidence}): emulated, several times "
              "slower than PRECISION=off or auto", file=sys.stderr, flush=True)
    return Precision(requested, "bfloat16", native, f"PRECISION=bfloat16 asks for it; {evidence}")
