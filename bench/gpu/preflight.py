"""Before a GPU check spends device time: this Python's versions, what differs from our pins, and
whether every module a stage imports is there. Standard library first, so it runs anywhere.

Usage: python3 bench/gpu/preflight.py --stage 1|2 [--dry-run]
Exit 0 with a report; exit 1 with the reason when the stage cannot run (a module missing, no CUDA,
stage 2 without ONNX Runtime's CUDA provider). The dry run (CPU) checks all but the device.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import platform
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # run as a file (python3 bench/gpu/preflight.py), like the stages' modules
# What each stage's programs import, theirs and third parties' (the bench's pytest plugins included).
STAGE_MODULES = {
    "1": ["pipeline.train", "export.__main__", "export.parity", "export.variants", "export.tune", "bench.suites.conftest",
          "bench.report.__main__", "onnx", "onnxscript", "onnxruntime", "numpy", "pytest", "pytest_benchmark", "matplotlib"],
    "2": ["export.parity", "export.variants", "bench.suites.conftest", "onnxruntime", "pytest_benchmark"],
}
MIN_TORCH = (2, 11)  # the oldest torch the code is known to run on (the lent GPU machine's)
MIN_ONNXSCRIPT = (0, 6)  # the first with the API torch 2.11's exporter imports (onnxscript._framework_apis.torch_2_11)
SHOWN = ("torch", "onnxruntime-gpu", "onnx", "onnxscript", "numpy")  # versions printed, each beside its pin if any


def pins() -> dict[str, str]:
    """name -> the version pyproject.toml pins (==), read as text: no tomllib needed for this."""
    text = (REPO / "pyproject.toml").read_text()
    return {name: m.group(1) if (m := re.search(rf'"{re.escape(name)}==([^";]+)', text)) else None for name in SHOWN}


def version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def check(stage: str, dry_run: bool) -> list[str]:
    """Problems that stop the stage (empty: it can run); prints what it found on the way."""
    problems = []
    print(f"python {platform.python_version()} ({sys.executable}); {platform.platform()}")
    for name, pinned in pins().items():
        installed = version(name) or (version("onnxruntime") if name == "onnxruntime-gpu" else None)
        note = "" if pinned is None or (installed and installed.split("+")[0] == pinned) else f"  (pinned {pinned}: differs)"
        print(f"  {name}: {installed or 'not installed'}{note}")
    for module in STAGE_MODULES[stage]:
        try:
            importlib.import_module(module)
        except Exception as err:  # any import failure is a stage that cannot run: say which and why
            problems.append(f"cannot import {module}: {type(err).__name__}: {err}")
    onnxscript = version("onnxscript")  # torch.onnx.export(dynamo=True) of torch 2.11+ imports its torch_2_11 API
    if onnxscript is None or tuple(int(p) for p in re.findall(r"\d+", onnxscript)[:2]) < MIN_ONNXSCRIPT:
        problems.append(f"onnxscript {onnxscript} is older than {'.'.join(map(str, MIN_ONNXSCRIPT))}: the ONNX export fails")
    import torch  # after the imports above, which need it anyway

    if tuple(int(p) for p in re.findall(r"\d+", torch.__version__)[:2]) < MIN_TORCH:
        problems.append(f"torch {torch.__version__} is older than {'.'.join(map(str, MIN_TORCH))}, the oldest this code runs on")
    import onnxruntime as ort

    print(f"  torch CUDA: {torch.cuda.is_available()} ({torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no device'}), "
          f"torch.version.cuda {torch.version.cuda}; onnxruntime providers: {ort.get_available_providers()}")
    if not dry_run and not torch.cuda.is_available():
        problems.append("torch sees no CUDA device")
    if stage == "2" and not dry_run:
        problems += cuda_provider_problems(ort)
    return problems


def cuda_provider_problems(ort) -> list[str]:
    """ORT's CUDA provider listed is not ORT's CUDA provider loaded (cuDNN or cuBLAS may be missing):
    open a one-node model on it, no fallback, as stage 2's sessions will."""
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return ["onnxruntime has no CUDAExecutionProvider: carry the onnxruntime-gpu wheel's parts first "
                "(bash bench/gpu/wheels.sh here, then `bash bench/gpu_check.sh receive` per part)"]
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [value],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CUDAExecutionProvider"])
    except Exception as err:  # ORT's own error types: the provider cannot run, which is the finding
        return [f"onnxruntime's CUDAExecutionProvider does not load: {type(err).__name__}: {err}"]
    if session.get_providers()[0] != "CUDAExecutionProvider":
        return [f"onnxruntime fell back to {session.get_providers()} instead of the CUDA provider"]
    print(f"  onnxruntime CUDA provider: loaded ({session.get_providers()})")
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--stage", choices=sorted(STAGE_MODULES), required=True)
    parser.add_argument("--dry-run", action="store_true", help="the CPU: no CUDA device needed")
    args = parser.parse_args(argv)
    problems = check(args.stage, args.dry_run)
    for problem in problems:
        print(f"preflight: {problem}", file=sys.stderr)
    print(f"preflight: stage {args.stage} {'cannot run' if problems else 'can run'}{' (dry run, CPU)' if args.dry_run else ''}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
