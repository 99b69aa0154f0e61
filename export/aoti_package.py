"""Reading an AOTInductor package (`model.aoti.pt2`): its metadata, the CPU it was compiled for, and
loading it only where its code can run.

AOTInductor compiles the model's C++ with `-march=native` on x86 (torch._inductor.cpp_builder), so
the package's `.so` may use any instruction the building CPU has (pytorch/pytorch#191713): run on
a CPU without one, it dies of SIGILL. export/to_aoti.py records the building CPU's instruction-set
flags in the package's metadata (CPU_ISA_FLAGS); `check_cpu` refuses a package that needs a flag
this CPU lacks, before anything of it is loaded.

The metadata is the JSON file AOTInductor writes beside the model's code inside the zip
(`data/aotinductor/<model>/<hash>.wrapper_metadata.json`), read with zipfile: no torch, no load.
Each generated `.cpp` has a copy (`<hash>.kernel_metadata.json`), and the C++ loader reads the one
beside whichever `.cpp` comes last in the zip, so `package_metadata` refuses a package whose copies
disagree: the loader would see other metadata, or none (export/to_aoti.py says how that happened).

The package holds two compiled models of the same head (export/to_aoti.py): MODEL ("model", the
name every loader picks by default) for any batch, and BATCH1_MODEL, compiled for single rows.
`open_package` loads both through torch._C._aoti.AOTIModelPackageLoader, the C++ loader that the public
`torch._inductor.aoti_load_package` wraps (the same runner, without importing torch._inductor and
torch._dynamo first: seconds on a small CPU; export/cold_start.py times both), and sends a batch of
one row to BATCH1_MODEL, and only that: given more rows, BATCH1_MODEL answers the first, without an
error.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from handoff.cpu import missing_isa
from handoff.errors import PipelineError

CPU_ISA_FLAGS = "cpu_isa_flags"  # metadata key: the building CPU's handoff.cpu.isa_flags(), space-separated
CPU_MODEL = "cpu_model"  # metadata key: the building CPU's name
INPUT_SHAPE = "input_shape"  # metadata key (also in model.pt2's): one sample's shape, comma-separated, e.g. "1,28,28"
DEVICE_KEY = "AOTI_DEVICE_KEY"  # AOTInductor's own key: "cpu" or "cuda"
METADATA_SUFFIX = "_metadata.json"
WRAPPER_METADATA_SUFFIX = ".wrapper" + METADATA_SUFFIX  # the model's own; a kernel file's is a copy of it
MODEL = "model"  # the compiled model for any batch size (AOTInductor's default name)
BATCH1_MODEL = "batch1"  # the same head compiled for a batch of exactly one row


def package_metadata(path: Path) -> dict[str, str]:
    """The metadata AOTInductor stored in the package (ours and its own AOTI_* keys)."""
    try:
        with zipfile.ZipFile(path) as package:
            names = [n for n in package.namelist() if "/aotinductor/" in n and n.endswith(METADATA_SUFFIX)]
            if not names:
                raise PipelineError(f"{path}: no AOTInductor metadata inside; not a package `make export` wrote")
            copies = {name: json.loads(package.read(name)) for name in names}
    except (OSError, zipfile.BadZipFile, json.JSONDecodeError) as err:
        raise PipelineError(f"{path}: not a readable AOTInductor package ({err})") from err
    wrapper = next((name for name in names if name.endswith(WRAPPER_METADATA_SUFFIX)), names[0])
    if any(copy != copies[wrapper] for copy in copies.values()):
        raise PipelineError(f"{path}: its metadata files disagree ({', '.join(Path(n).name for n in names)}); "
                            "the C++ loader may read another one; run `make export` again")
    return copies[wrapper]


def check_cpu(path: Path, metadata: dict[str, str]) -> None:
    """Refuse a CPU package whose compiled code needs instructions this CPU lacks."""
    if metadata.get(DEVICE_KEY) != "cpu":
        return
    if CPU_ISA_FLAGS not in metadata:
        raise PipelineError(f"{path}: the package does not say which CPU it was compiled for; run `make export`")
    lacking = missing_isa(metadata[CPU_ISA_FLAGS].split())
    if lacking:
        raise PipelineError(
            f"{path}: compiled for another CPU ({metadata.get(CPU_MODEL, '?')}, -march=native) whose instructions "
            f"{', '.join(lacking)} this CPU lacks; running it could crash: run `make export` on this machine")


def open_package(path: Path, metadata: dict[str, str]):
    """The package's runner (`metadata`, its package_metadata, checked against this CPU first): a
    callable from one input tensor to the probabilities, through the C++ loader directly; a single
    row goes to BATCH1_MODEL, every other batch to MODEL."""
    import torch  # here, not at the top: reading metadata needs no torch

    check_cpu(path, metadata)
    any_batch, one_row = (torch._C._aoti.AOTIModelPackageLoader(str(path), name, False, 1, -1) for name in (MODEL, BATCH1_MODEL))
    return lambda inputs: (one_row if inputs.shape[0] == 1 else any_batch).run([inputs])[0]
