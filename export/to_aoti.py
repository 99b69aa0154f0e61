"""AOTInductor package of the exported softmax head: `model.aoti.pt2`, a zip holding the compiled
models (`.so`, one for any batch and one for single rows) and their weights, loaded by
`torch._inductor.aoti_load_package` in Python or `torch::inductor::AOTIModelPackageLoader` in C++,
with no model source and no Python model code.

Compiled for one device (the export device: CPU here, CUDA on a GPU) with the C++ compiler Inductor
finds (g++ on these machines). Options, chosen by measurement on a 2-core AVX2 EPYC (batch-1 and
batch-1024 latency against eager, docs/export.md "Which artifact"):
  - max_autotune with Inductor's C++ GEMM template beside ATen's: each matmul is timed at compile
    time and the faster kept. It makes batch 1 about 3x faster than ATen's addmm (no library call
    per layer); it adds seconds to the compile (AUTOTUNE=off skips it).
  - two models in one package (export/aoti_package.py names them): MODEL, with a dynamic batch
    whose size hint is LARGE_BATCH_HINT (the template's blocking is chosen for that size, so large
    batches stay as fast as eager; a hint of 8 made batch 1024 1.6x slower than eager), and
    BATCH1_MODEL, compiled for exactly one row (on the CPU with the C++ template alone, below).
    MODEL answered a single row no sooner than eager; BATCH1_MODEL 3.5x sooner (on a 2-core Zen 4,
    29-30 µs against 72-106 µs for MODEL and 105-107 µs for eager, two runs of seven alternating
    rounds). Each compiled model carries its own copy of the weights.
  - no freezing, although PyTorch's docs advise it on the CPU: here it made batch 1 no faster and
    batch 1024 1.3x slower (oneDNN's prepacked linear).
  - its own Inductor cache (torch._inductor.utils.fresh_cache), removed after: in the shared default
    cache, generated files are named by their code, not by the weights or the metadata, so two
    compiles of one architecture at once (two exports, the test suite's workers) write the same files
    and each packages what the other left there. Seen: an empty kernel `_metadata.json` (the C++ loader
    reads it when the kernel's `.cpp` comes last in the zip, and fails) and another run's metadata in
    a package. The cache saves nothing here (an 8 s compile either way).
The package's metadata holds the model contract (the ONNX file's keys) and, for a CPU package, the
building CPU's instruction-set flags (export/aoti_package.py refuses it on a CPU that lacks one).
The compile time and the cold start in a fresh process (export/cold_start.py) go into the export report.
"""

from __future__ import annotations

import copy
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch._inductor.cpu_vec_isa import pick_vec_isa
from torch._inductor.package import package_aoti
from torch._inductor.utils import fresh_cache

from export.aoti_package import BATCH1_MODEL, CPU_ISA_FLAGS, CPU_MODEL, MODEL, package_metadata
from export.head import SoftmaxHead
from export.recorded_warnings import recording_warnings
from export.to_exported import export_head
from handoff.atomic import atomic_path
from handoff.cpu import cpu_model, isa_flags
from handoff.errors import PipelineError, first_line

AUTOTUNE_CONFIGS = {"max_autotune": True, "max_autotune_gemm_backends": "CPP,ATEN"}  # see above
# BATCH1_MODEL on the CPU: Inductor's C++ template alone. At one row it beat ATen's addmm on every
# layer (2.4 against 10.0 µs for the first on a Zen 4), so timing ATen beside it only lengthened the
# compile (27 against 39 s; the same 28-30 µs a row).
BATCH1_CPU_AUTOTUNE_CONFIGS = {"max_autotune": True, "max_autotune_gemm_backends": "CPP"}
LARGE_BATCH_HINT = 1024  # rows of the example the package is compiled from: the batch dimension's size hint


def export_aoti(head: SoftmaxHead, payload: dict[str, Any], metadata: dict[str, str], device: torch.device,
                autotune: bool, path: Path) -> dict[str, Any]:
    """Compile the head for `device` into an AOTInductor package at `path`, atomically; returns the
    report entry, with the compile time and a fresh process's cold start."""
    stamped = {**metadata, CPU_ISA_FLAGS: " ".join(isa_flags()), CPU_MODEL: cpu_model()}
    options = {MODEL: AUTOTUNE_CONFIGS if autotune else {}, BATCH1_MODEL: batch1_options(device) if autotune else {}}
    started = time.perf_counter()
    with recording_warnings() as recorded, atomic_path(path, suffix=".pt2") as tmp:  # the packager wants a .pt2 name
        try:
            on_device = copy.deepcopy(head).to(device)
            programs = {MODEL: export_head(on_device, payload, device, rows=LARGE_BATCH_HINT),
                        BATCH1_MODEL: export_head(on_device, payload, device, rows=1, dynamic=False)}
            # This compile's files are its own (see above); the folder around fresh_cache's also goes
            # when the compile fails, which fresh_cache keeps for debugging.
            with tempfile.TemporaryDirectory(prefix="aoti-cache-") as private, fresh_cache(dir=private):
                compiled = {name: compile_model(program, {**options[name], "aot_inductor.metadata": stamped})
                            for name, program in programs.items()}
                package_aoti(str(tmp), compiled)
        except Exception as err:  # a compiler missing or failing means no artifact: report why
            raise PipelineError(f"AOTInductor compile failed: {first_line(err)} (it needs a C++ compiler: g++ or clang)") from err
        compiled_s = time.perf_counter() - started
        own = package_metadata(tmp)
        cold = cold_start(tmp)
    return {
        "file": path.name,
        "method": "torch._inductor.aot_compile (one per model) and torch._inductor.package.package_aoti",
        "seconds": compiled_s,
        "inductor_configs": options,
        "models": {MODEL: f"any batch (size hint {LARGE_BATCH_HINT})", BATCH1_MODEL: "a batch of one row"},
        "device": device.type,
        "torch": str(torch.__version__),
        "cpu_isa": own.get("AOTI_CPU_ISA"),
        "cpu_isa_flags": stamped[CPU_ISA_FLAGS].split(),
        "cpu_model": stamped[CPU_MODEL],
        "cold_start": cold,
        "warnings": recorded,
    }


def batch1_options(device: torch.device) -> dict[str, Any]:
    """BATCH1_MODEL's autotuning: the C++ template alone where it can run (a CPU with a vector ISA
    Inductor knows: with none, its micro-kernels are not there and CPP alone would offer no kernel
    at all), else the same as MODEL's."""
    return BATCH1_CPU_AUTOTUNE_CONFIGS if device.type == "cpu" and pick_vec_isa() else AUTOTUNE_CONFIGS


def compile_model(program: torch.export.ExportedProgram, configs: dict[str, Any]) -> list:
    """The files of one compiled model, for package_aoti: the several-models way that
    aoti_compile_and_package's documentation gives (aot_compile with aot_inductor.package set)."""
    args, kwargs = program.example_inputs
    return torch._inductor.aot_compile(program.module(), args, kwargs, options={**configs, "aot_inductor.package": True})


def cold_start(path: Path) -> dict[str, dict[str, float]]:
    """Seconds a fresh Python process takes to import torch, load the package and answer its first
    call, for each way to load it (export/cold_start.py), as a server starting on it would."""
    # -X faulthandler: a crash in the loader's C++ (a signal, no Python error) still leaves a traceback.
    command = [sys.executable, "-X", "faulthandler", "-m", "export.cold_start", str(path)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise PipelineError(f"{path}: a fresh process could not load and run it ({exit_reason(done.returncode)}): "
                            f"{(done.stderr.strip() or done.stdout.strip() or 'no output')[-800:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def exit_reason(returncode: int) -> str:
    """'exit status 1', or the signal's name for a process killed by one (a negative returncode)."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"
