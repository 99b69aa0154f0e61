"""The benchmark suites and their report, in smoke mode, so they cannot rot (numbers not checked)."""

from __future__ import annotations

import json
import subprocess
import sys

from bench.report import main as report_main
from conftest import REPO


def test_bench_suite_and_report_run_in_smoke_mode(exported, data_dir, cli_env, tmp_path):
    results = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "bench"), "-q", "-p", "no:cacheprovider", "--bench-smoke",
         "--bench-artifacts", str(exported), "--bench-data-dir", str(data_dir), f"--benchmark-json={results}"],
        capture_output=True, text=True, env=cli_env, cwd=REPO, check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    data = json.loads(results.read_text())
    kinds = {b["extra_info"]["kind"] for b in data["benchmarks"]}
    assert kinds == {"inference", "train_step", "time_to_accuracy"}
    backends = {b["extra_info"]["backend"] for b in data["benchmarks"] if b["extra_info"]["kind"] == "inference"}
    assert {"eager-cpu", "torchscript-cpu", "ort-cpu"} <= backends
    for bench in data["benchmarks"]:
        if bench["extra_info"]["kind"] != "time_to_accuracy":
            assert {"p50", "p90", "p99"} == bench["extra_info"]["latency_ms"].keys()
            assert bench["extra_info"]["samples_per_second"] > 0
    assert {"cpu_model", "cpu_cores", "versions", "ort_session_options", "torch_threads"} <= data["machine_info"].keys()
    if not any("cuda" in b["name"] for b in data["benchmarks"]):  # no GPU: every CUDA case skipped, with its reason
        assert data["skipped"] and all(s["reason"] for s in data["skipped"])

    assert report_main(["--results", str(results), "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "| cpu | ort-cpu | 64 |" in report and "## Time to accuracy" in report and "SMOKE MODE" in report
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
