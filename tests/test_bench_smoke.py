"""The benchmark suites and their report, in smoke mode, so they cannot rot (numbers not checked)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from bench.report.__main__ import main as report_main
from conftest import REPO, worker_threads
from pipeline.config import RECIPES


def bench_smoke(selection: str, json_file, exported, data_dir, cli_env) -> dict:
    """`make bench` (-m "not study") or `make bench-study` (-m study), in smoke mode: its JSON."""
    run = subprocess.run(
        [sys.executable, "-m", "pytest", str(REPO / "bench" / "suites"), "-q", "-p", "no:cacheprovider", "--bench-smoke",
         # the targets' batch sizes only: torch.compile compiles once per size
         f"--bench-threads={worker_threads()}", "--bench-batch-sizes=1,1024", "-m", selection,
         "--bench-artifacts", str(exported), "--bench-data-dir", str(data_dir), f"--benchmark-json={json_file}"],
        capture_output=True, text=True, env=cli_env, cwd=REPO, check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return json.loads(json_file.read_text())


def test_bench_suite_and_report_run_in_smoke_mode(exported, data_dir, cli_env, tmp_path):
    """`make bench`'s suites (smoke mode) and the report on them alone (no study.json)."""
    results = tmp_path / "results.json"
    data = bench_smoke("not study", results, exported, data_dir, cli_env)
    assert {b["extra_info"]["kind"] for b in data["benchmarks"]} == {
        "inference", "train_step", "time_to_accuracy", "targets_inference", "targets_training"}
    inference = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"]["kind"] == "inference"]
    backends = {r["backend"] for r in inference}
    expected = {"eager-cpu", "torchscript-cpu", "exported-cpu", "aoti-cpu", "ort-cpu", "compiled-cpu", "ort-tuned-fp32-cpu",
                "ort-tuned-int8-cpu", "ort-tuned-int8-dynamic-cpu", "ort-tuned-fp16-cpu", "openvino-fp32-cpu", "openvino-int8-cpu"}
    if importlib.util.find_spec("openvino") is None:  # the peers extra is not installed: skipped, with the reason
        expected -= {"openvino-fp32-cpu", "openvino-int8-cpu"}
        assert any("openvino is not installed" in s["reason"] for s in data["skipped"])
    assert expected <= backends, data["skipped"]
    for r in inference:  # every row says which function it timed: its accuracy and agreement with fp32
        assert r["variant"] in ("fp32", "int8", "int8-dynamic", "fp16") and 0.9 <= r["agreement"] <= 1
        assert r["accuracy"] > 0.9
    tuned = next(r for r in inference if r["backend"] == "ort-tuned-int8-cpu")
    assert set(tuned["tuned_options"]) == {"1", "64"}  # the conftest's quick tuning
    assert data["machine_info"]["ort_tuning"]["int8"].keys() == {"1", "64"}
    for bench in data["benchmarks"]:
        if bench["extra_info"]["kind"] in ("inference", "train_step"):
            assert {"p50", "p90", "p99"} == bench["extra_info"]["latency_ms"].keys()
            assert bench["extra_info"]["samples_per_second"] > 0
    timed = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"]["kind"] == "time_to_accuracy"]
    assert {(r["recipe"], r["seed"]) for r in timed} == {("fast", 0), ("seed", 0)}
    for r in timed:  # the floor: 6 x 680,880 multiply-adds per sample at the measured GEMM rate
        assert r["forward_macs"] == 680_880 and r["gemm_gflops"] > 0
        assert r["floor_seconds"] == pytest.approx(6 * 680_880 * r["samples"] / (r["gemm_gflops"] * 1e9))
        assert r["precision"]["dtype"] == data["machine_info"]["precision"]["cpu"]["dtype"] or r["recipe"] == "seed"
    assert {"cpu_model", "cpu_cores", "cpu_flags", "precision", "versions", "ort_session_options",
            "torch_threads"} <= data["machine_info"].keys()
    if not any("cuda" in b["name"] for b in data["benchmarks"]):  # no GPU: every CUDA case skipped, with its reason
        assert data["skipped"] and all(s["reason"] for s in data["skipped"])

    targets = {r["batch_size"]: r for r in (b["extra_info"] for b in data["benchmarks"]) if r["kind"] == "targets_inference"}
    assert set(targets) == {1, 1024}
    assert {"eager-cpu", "ort-cpu", "ort-tuned-int8-cpu", "aoti-cpu", "exported-cpu", "torchscript-cpu",
            "ort-floor-int8-cpu", "ort-floor-fp32-cpu", "ort-first-layer-int8-cpu"} <= set(targets[1]["seconds_per_call"])
    assert all(len(rounds) == 2 for rounds in targets[1]["seconds_per_call"].values())  # smoke: two alternating rounds
    training = next(b["extra_info"] for b in data["benchmarks"] if b["extra_info"]["kind"] == "targets_training")
    assert set(training["seconds_per_call"]) == {"seed", "fast", "gemm", "step_gemms", "fast_forward_backward", "fast_optimizer"}
    assert training["batch_size"] == {"seed": 64, "fast": RECIPES["mnist"]["fast"].batch_size}
    assert training["layer_macs"]["fast"] == [784 * 520, 520 * 320, 320 * 240, 240 * 120, 120 * 10]

    assert report_main(["--results", str(results), "--out", str(tmp_path)]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "| cpu | ort-cpu | fp32 | 1024 |" in report and "## Time to accuracy" in report and "SMOKE MODE" in report
    assert "its honest compute floor" in report and "the old floor (6 FLOPs per forward multiply-add" in report
    assert "`make bench-study` (not run: no study.json)" in report
    assert "| cpu | ort-tuned-int8-cpu | int8 | 1024 |" in report and "- Batch 1: best artifact `ort-" in report
    assert "ORT options chosen by `make tune` for int8: batch 1:" in report
    assert "  - best torch-side artifact `" in report and "eager's (target >= 3x): " in report
    assert "  - fastest of our artifacts at batch 1024 on this CPU: `" in report
    assert "  - ONNX Runtime's per-call floor (`ort-floor-" in report and "(target <= 1.5x): " in report
    assert "    - its graph up to its first layer's product alone (`ort-first-layer-" in report
    assert "its forward and backward alone (autograd, as the step runs them) take " in report
    for rung in ("ort-floor", "ort-first-layer"):  # measuring sticks, never an artifact
        assert f"best artifact `{rung}" not in report and f"fastest of our artifacts at batch 1 on this CPU: `{rung}" not in report
    assert ("- AOTInductor package: `batch1` for a batch of one row (max_autotune=True, max_autotune_gemm_backends=CPP), "
            "`model` for any batch (size hint 1024) (max_autotune=True, max_autotune_gemm_backends=CPP,ATEN); compiled in "
            in report and "direct loader " in report)
    assert "- C++ loader: not run (`make cpp`; MNIST only)." in report
    if not torch.cuda.is_available():  # the providers that really load, and one line for every CUDA case skipped
        assert "- ORT providers that load here: CPUExecutionProvider" in report
        assert report.count("no CUDA device") == 1 and "cases: no CUDA device (e.g. `" in report
    assert "x its honest compute floor" in report
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow  # the study's smoke runs take a minute more; make test runs make bench's half above
def test_the_study_joins_the_report_in_smoke_mode(exported, data_dir, cli_env, tmp_path):
    """`make bench-study`'s suites (smoke mode), and the report with study.json beside results.json."""
    bench_smoke("not study", tmp_path / "results.json", exported, data_dir, cli_env)
    study = bench_smoke("study", tmp_path / "study.json", exported, data_dir, cli_env)
    assert {b["extra_info"]["kind"] for b in study["benchmarks"]} == {"time_to_accuracy", "lecture_script", "ablation", "recipe_search"}
    timed = {(b["extra_info"]["recipe"], b["extra_info"]["seed"]) for b in study["benchmarks"]
             if b["extra_info"]["kind"] == "time_to_accuracy"}
    assert timed == {("fast", 1), ("fast", 2)}
    variants = {b["extra_info"]["variant"] for b in study["benchmarks"] if b["extra_info"]["kind"] == "ablation"}
    assert {"fast", "batch-64", "lecture-optimiser", "other-precision", "one-thread", "dataloader"} <= variants
    assert report_main(["--results", str(tmp_path / "results.json"), "--out", str(tmp_path)]) == 0  # study.json joins in
    report = (tmp_path / "report.md").read_text()
    assert "other conditions" not in report  # the study ran on this machine, as the bench did
    assert "| dataloader |" in report and "the lecture's script trained" in report and "| batch-512 | batch 512 |" in report


def test_the_ort_floor_graph_is_one_node_that_copies_the_input(exported):
    """The per-call floor's graph (bench.suites.ort_floor): the artifact's input, one Flatten node,
    and its answer is the input, row by row (numpy's reshape is the oracle)."""
    from bench.suites.ort_floor import floor_graph, ort_floor

    graph = floor_graph(exported / "model.onnx")
    assert [node.op_type for node in graph.graph.node] == ["Flatten"]
    rows = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    floor = ort_floor(exported / "model.onnx", "fp32", {})
    np.testing.assert_array_equal(floor.run(rows), rows.reshape(3, -1))
    call = floor.prepare(rows)
    call()  # the bound call the targets time runs


def test_the_first_layer_rung_is_the_artifacts_graph_cut_after_its_first_product(exported):
    """bench.suites.ort_floor's other rung: fp32's first layer against numpy with the graph's own
    weights (the oracle), and int8's a prefix of the int8 graph that keeps its input quantisation."""
    import onnx
    from onnx import numpy_helper

    from bench.suites.ort_floor import first_layer_graph, ort_first_layer

    rows = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
    model = onnx.load(str(exported / "model.onnx"))
    gemm = next(node for node in model.graph.node if node.op_type == "Gemm")
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    w, b = weights[gemm.input[1]], weights[gemm.input[2]]
    w = w.T if any(a.name == "transB" and a.i for a in gemm.attribute) else w  # (784, 520) either way
    first = ort_first_layer(exported / "model.onnx", "fp32", {})
    np.testing.assert_allclose(first.run(rows), rows.reshape(3, -1) @ w + b, rtol=1e-5, atol=1e-5)
    first.prepare(rows)()  # the bound call the targets time runs

    int8 = onnx.load(str(exported / "model.int8.onnx"))
    cut = first_layer_graph(exported / "model.int8.onnx")
    ops = [node.op_type for node in cut.graph.node]
    assert ops[-1] == "Gemm" and ops.count("Gemm") == 1 and "QuantizeLinear" in ops
    assert {node.name for node in cut.graph.node} < {node.name for node in int8.graph.node}  # a part of its graph
    assert ort_first_layer(exported / "model.int8.onnx", "int8", {}).run(rows).shape == (3, 520)


def test_the_training_targets_by_hand():
    """The report's training ratios from one round's timings, computed by hand."""
    from bench.report.training import old_step_floor, step_floor, time_to_speedup

    # A 2048³ GEMM (17.18 GFLOP) in 40 ms is 429.5 GFLOP/s; a batch-1024 step of 6 x 680,880 FLOPs
    # a sample is 4.183 GFLOP, 9.740 ms at that rate; the step took 15 ms: 1.540x the old floor.
    # Its own matrix products at its shapes took 12 ms in the same round: 1.25x the honest floor.
    record = {"seconds_per_call": {"fast": [0.015], "seed": [0.002], "gemm": [0.040], "step_gemms": [0.012]},
              "batch_size": {"fast": 1024, "seed": 64}, "forward_macs": {"fast": 680_880, "seed": 680_880},
              "gemm_flops": 2 * 2048**3}
    assert old_step_floor(record).value == pytest.approx(1.540, abs=5e-4)
    assert step_floor(record).value == pytest.approx(1.25)
    # Its forward and backward alone took 15.6 ms (1.30x the 12 ms floor), its optimizer 0.6 ms (0.05x).
    from bench.report.training import _parts_text
    parts = _parts_text({"seconds_per_call": {**record["seconds_per_call"], "fast_forward_backward": [0.0156],
                                              "fast_optimizer": [0.0006]}})
    assert "take 1.30x (round by round 1.30-1.30x) the floor's time: above 1.25x already" in parts
    assert "the optimizer's update alone 0.05x" in parts
    assert _parts_text(record) == ""  # a record from before the parts were timed
    # fast: 180,000 samples at 15 ms / 1024 = 2.637 s; seed: 660,000 samples at 2 ms / 64 = 20.625 s: 7.82x.
    fast = {"time_to": {"0.98": {"samples": 180_000}}}
    seed = {"time_to": {"0.97": {"samples": 660_000}}}
    assert time_to_speedup(fast, seed, record).value == pytest.approx(20.625 / 2.63671875)
    # 7.82x misses 12x; at its 12 ms floor the fast step would give 20.625 / 2.109 = 9.78x: still short.
    from bench.report.training import _at_floor_text
    first = {**fast, "seed": 0, "time_to": {"0.98": {"samples": 180_000, "epoch": 2, "seconds": 3.0}}}
    text = _at_floor_text(first, seed, record, time_to_speedup(fast, seed, record))
    assert text == "; with the fast step at its honest floor it would be 9.78x, below 12x: no faster step can meet the target with these epochs on this machine"
    # The seed recipe needing 900,000 samples instead: 10.67x, and 13.33x at the floor, so the step would
    # have to come within 13.33 / 12 = 1.11x of its floor.
    more = {"time_to": {"0.97": {"samples": 900_000}}}
    assert _at_floor_text(first, more, record, time_to_speedup(fast, more, record)).endswith(
        "it would be 13.33x, so the target needs the fast step within 1.11x of its floor")


def test_the_honest_floor_counts_the_flops_autograd_does():
    """autograd_flops_per_sample against torch's own FLOP counter on a real training step of the
    lecture's MLP, and the step_gemms_call the bench times against the same count."""
    from torch.utils.flop_counter import FlopCounterMode

    from bench.report.floor import autograd_flops_per_sample
    from bench.suites.hardware import step_gemms_call
    from pipeline.model import MLP, linear_layers

    model, batch = MLP(), 8
    macs = [layer.in_features * layer.out_features for layer in linear_layers(model)]
    assert autograd_flops_per_sample(macs) / sum(macs) == pytest.approx(4.8025, abs=1e-4)  # not 6
    images = torch.rand(batch, 1, 28, 28)
    with FlopCounterMode(display=False) as counted:
        torch.nn.functional.cross_entropy(model(images), torch.zeros(batch, dtype=torch.long)).backward()
    assert counted.get_total_flops() == autograd_flops_per_sample(macs) * batch
    step_gemms = step_gemms_call([(layer.in_features, layer.out_features) for layer in linear_layers(model)], batch,
                                 torch.float32, torch.device("cpu"))
    with FlopCounterMode(display=False) as timed:
        step_gemms()
    assert timed.get_total_flops() == counted.get_total_flops()
