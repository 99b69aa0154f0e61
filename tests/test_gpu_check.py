"""bench/gpu_check.sh, dry run: the script a lent GPU machine runs, end to end on this CPU with tiny
sizes and no CUDA rows, under the GPU machine's package set (DEVICE_LACKS blocked),
so the first GPU run cannot fail on a typo, a missing file or an import. Stage 2's wheel travels in
parts: a small real wheel goes the same way here (receive per part, reassemble, sha256, install)."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO, blocked_imports
from pipeline.config import RECIPES

SCRIPT = REPO / "bench" / "gpu_check.sh"
# What our venv has and the lent GPU machine's image lacks (/work/.library/device/KINDS.md, read on
# 2026-11-17: torch 2.11, onnx 1.23, onnxscript, onnxruntime 1.30 CPU-only, numpy, matplotlib,
# pytest-benchmark, pyyaml, tqdm, torchvision, hypothesis, grpcio, uvloop, ...; no registry there).
DEVICE_LACKS = ("tritonclient", "uvicorn", "httptools", "orjson", "openvino", "playwright")
PROBE = "gpu_check_probe"


def probe_wheel(folder: Path) -> Path:
    """A minimal, valid pure-Python wheel: what pip installs from the reassembled parts."""
    wheel = folder / f"{PROBE}-0.1-py3-none-any.whl"
    info = f"{PROBE}-0.1.dist-info"
    files = {f"{PROBE}/__init__.py": "VERSION = '0.1'\n",
             f"{info}/METADATA": "Metadata-Version: 2.1\nName: gpu-check-probe\nVersion: 0.1\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{info}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"])
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


def gpu_check(stage: str, env: dict[str, str]) -> str:
    run = subprocess.run(["bash", str(SCRIPT), stage], env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    return run.stdout


@pytest.mark.slow  # 2.5 minutes on one core: the step before any device time (the script's header), not every CI run
def test_the_gpu_check_runs_end_to_end_on_the_cpu(tmp_path, cli_env):
    out, parts = tmp_path / "out", tmp_path / "parts"
    env = {**cli_env, "GPU_CHECK_DRY_RUN": "1", "PY": sys.executable, "OUT": str(out), "GPU_CHECK_WORK": str(tmp_path / "run"),
           "GPU_CHECK_PARTS": str(parts), "GPU_CHECK_WHEELS": str(tmp_path / "wheels"), "GPU_CHECK_SITE": str(tmp_path / "site")}
    env = blocked_imports(env, DEVICE_LACKS, "not on the GPU machine (tests/test_gpu_check.py blocks it)")
    log = gpu_check("1", env)
    assert "preflight: stage 1 can run (dry run, CPU)" in log
    assert re.search(r"\n\d+ skipped, \d+ deselected", log)  # the GPU tests ran, each skipped here (no CUDA)
    summary = (out / "stage1.md").read_text()
    for row in ("eager step: accuracy", "CUDA-graph step: time to 98%", "parity gate, TF32 off", "fp32 inference, batch 8192",
                "| inference | eager-cpu | cpu | 64 |", f"| train_step | fast | cpu | {RECIPES['mnist']['fast'].batch_size} |"):
        assert row in summary
    assert {"gpu_check.log", "bench_stage1.json", "train_metrics_graph.json", "parity.md", "variants.json"} <= {p.name for p in out.iterdir()}

    wheel = probe_wheel(tmp_path)  # stage 2's wheel, in two parts over two "calls"
    data = wheel.read_bytes()
    for index, part in enumerate((data[: len(data) // 2], data[len(data) // 2 :])):
        parts.mkdir(exist_ok=True)
        for old in parts.glob("part-*"):
            old.unlink()
        (parts / f"part-{index:02d}").write_bytes(part)
        (parts / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  {wheel.name}\n")
        gpu_check("receive", env)
    log = gpu_check("2", env)
    assert f"{wheel.name}: OK" in log and (tmp_path / "site" / PROBE / "__init__.py").is_file()
    assert "preflight: stage 2 can run (dry run, CPU)" in log
    assert "| inference | ort-cpu | cpu | 1 |" in (out / "stage2.md").read_text()


def test_the_gpu_check_runs_every_gpu_test():
    """The script runs the test files that hold `gpu` tests (the others import what the device lacks):
    its list is pytest's."""
    listed = subprocess.run(["bash", "-c", r"grep -lE 'mark\.gpu|\bDEVICES\b' tests/test_*.py"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()
    collected = subprocess.run([sys.executable, "-m", "pytest", "tests", "--collect-only", "-q", "-m", "gpu", "-p", "no:cacheprovider"],
                               cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert {line.split("::")[0] for line in collected.splitlines() if "::" in line} <= set(listed)


def test_preflight_refuses_a_machine_without_cuda():
    if subprocess.run([sys.executable, "-c", "import torch; assert not torch.cuda.is_available()"]).returncode != 0:
        pytest.skip("this machine has CUDA")
    run = subprocess.run([sys.executable, str(REPO / "bench" / "gpu" / "preflight.py"), "--stage", "1"], capture_output=True, text=True)
    assert run.returncode == 1 and "preflight: torch sees no CUDA device" in run.stderr
    import onnxruntime as ort

    from bench.gpu.preflight import cuda_provider_problems
    if "CUDAExecutionProvider" in ort.get_available_providers():  # onnxruntime-gpu without a GPU: listed, not loadable
        assert "CUDAExecutionProvider does not load" in cuda_provider_problems(ort)[0]


def test_the_summary_finds_the_gpu_rows_under_their_backend_names():
    """The targets' rows as a GPU run records them (an oracle written by hand), then as skips."""
    from bench.gpu.summary import bench_rows

    def row(backend: str, batch: int, p50_ms: float, per_second: float) -> dict:
        latency = {"p50": p50_ms, "p90": p50_ms, "p99": 2 * p50_ms}
        return {"extra_info": {"kind": "inference", "backend": backend, "device": "cuda", "batch_size": batch,
                               "latency_ms": latency, "samples_per_second": per_second}}

    measured = {"benchmarks": [row("eager-cuda", 8192, 0.3, 25e6), row("eager-cudagraph-cuda", 1, 0.02, 5e4),
                               row("ort-cudagraph-fp32-cuda", 1, 0.03, 3e4)], "skipped": []}
    targets, table = bench_rows(measured)
    assert [t[1] for t in targets] == ["25.00 M samples/s", "p50 20.0 µs, p99 40.0 µs", "p50 30.0 µs, p99 60.0 µs"]
    assert targets[0][3] == "met" and len(table) == 2 + 3
    skipped = {"benchmarks": [], "skipped": [
        {"test": "bench/suites/test_inference.py::test_inference[8192-eager-cudagraph-cuda]", "reason": "another row's reason"},
        {"test": "bench/suites/test_inference.py::test_inference[8192-eager-cuda]", "reason": "no CUDA device"}]}
    assert bench_rows(skipped)[0][0][1] == "unmeasured: no CUDA device"
