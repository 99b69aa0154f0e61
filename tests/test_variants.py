"""The int8 and fp16 variants and their gate, and the ORT options tuning (`make export tune`).

The `exported` fixture ran both stages on a one-epoch model; these tests re-check the gate's claims
independently on the real MNIST test set, look inside the graphs, and make the checks fail.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto

from export import quantize
from export.tune import main as tune_main
from export.variant_gate import TOLERANCES, check
from export.variants import main as variants_main
from handoff.artifacts import VARIANT_FILES
from handoff.manifest import verify
from handoff.ort_options import DEFAULT_OPTIONS, SEARCH_SPACE, options_for_batch, session_options


def _probs(path, inputs):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: inputs})[0]


def test_every_variant_passed_its_gate_and_is_recorded(exported):
    report = json.loads((exported / "variants.json").read_text())
    assert report["passed"] and not report["failures"] and not report["baseline_failures"]
    verify(exported, [*VARIANT_FILES.values(), "variants.json"])  # each file's sha256 is in manifest.json
    for name in ("int8", "int8-dynamic", "fp16"):
        cpu = report["variants"][name]["checks"]["cpu"]
        tolerance = TOLERANCES[name]
        assert cpu["status"] == "ran" and cpu["passed"] and cpu["rows"] == 10_000
        assert cpu["accuracy_drop_points"] <= tolerance.max_accuracy_drop_points
        assert cpu["agreement"] >= tolerance.min_agreement and cpu["row_sum"] <= 1e-5
        assert cpu["batch_sizes"] == [1, 64, 1000] and 0 < cpu["max_abs"] < 1
    decisions = report["variants"]["int8"]["decisions"]
    assert decisions["layout"] and decisions["reduce_range"]


def test_int8_agrees_with_fp32_on_the_test_set_recomputed_here(exported, mnist):
    inputs, labels = mnist.held_out.inputs.numpy(), mnist.held_out.labels.numpy()
    fp32 = _probs(exported / "model.onnx", inputs)
    for name in ("int8", "fp16"):
        probs = _probs(exported / VARIANT_FILES[name], inputs)
        assert probs.dtype == np.float32 and probs.shape == fp32.shape
        assert (probs.argmax(1) == fp32.argmax(1)).mean() >= TOLERANCES[name].min_agreement
        assert abs((probs.argmax(1) == labels).mean() - (fp32.argmax(1) == labels).mean()) <= 0.003
        np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_int8_graph_is_qdq_with_int8_weights_and_a_float_logits_layer(exported):
    model = onnx.load(str(exported / "model.int8.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == TensorProto.INT8 and len(t.dims) == 2]
    assert len(int8_weights) == 4  # layers 1-4; the logits layer stays float32
    gemms = [n for n in model.graph.node if n.op_type == "Gemm"]
    float_inits = {t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT}
    assert gemms[-1].input[1] in float_inits
    props = {p.key: p.value for p in model.metadata_props}
    assert props["variant"] == "int8" and props["dataset"] == "mnist" and props["input_contract"]
    assert model.ir_version == onnx.load(str(exported / "model.onnx")).ir_version


def test_fp16_keeps_float32_io_and_softmax(exported):
    model = onnx.load(str(exported / "model.fp16.onnx"))
    assert {t.data_type for t in model.graph.initializer if len(t.dims) == 2} == {TensorProto.FLOAT16}
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax")
    cast_before = next(n for n in model.graph.node if softmax.input[0] in n.output)
    assert cast_before.op_type == "Cast"  # back to float32 before Softmax


def test_the_gate_fails_a_variant_that_computes_another_function():
    rng = np.random.default_rng(0)
    reference = rng.dirichlet(np.ones(10), size=2000).astype(np.float32)
    labels = reference.argmax(axis=1)
    flipped = reference.copy()
    flipped[:20] = np.roll(flipped[:20], 1, axis=1)  # 1% of rows change their argmax
    outputs = {bs: flipped for bs in (1, 64, 1000)}
    entry, failures = check("int8", outputs, {bs: reference for bs in (1, 64, 1000)}, labels, "test")
    assert not entry["passed"] and any("argmax agrees" in f for f in failures)
    assert any("points below" in f for f in failures)
    _, fp16_failures = check("fp16", outputs, {bs: reference for bs in (1, 64, 1000)}, labels, "test")
    assert any("max probability error" in f for f in fp16_failures)


def test_reduce_range_is_decided_by_the_cpus_int8_dot_products(monkeypatch):
    monkeypatch.setattr(quantize, "cpu_flags", lambda: {"present": ["avx2", "fma"]})
    assert quantize.reduce_range_choice("auto")[0] is True
    monkeypatch.setattr(quantize, "cpu_flags", lambda: {"present": ["avx2", "avx512_vnni"]})
    reduce_range, reason = quantize.reduce_range_choice("auto")
    assert reduce_range is False and "avx512_vnni" in reason
    assert quantize.reduce_range_choice("on")[0] is True


def test_tuning_records_a_choice_per_variant_and_batch_size(exported):
    tuning = json.loads((exported / "ort_tuning.json").read_text())
    verify(exported, ["ort_tuning.json"])
    assert tuning["cpu"]["model"] and tuning["onnxruntime"] == ort.__version__
    for variant in ("fp32", "int8"):
        sizes = tuning["variants"][variant]["batch_sizes"]
        assert set(sizes) == {"1", "64"}
        for chosen in sizes.values():
            assert chosen["options"].keys() == DEFAULT_OPTIONS.keys() and chosen["p50_us"] > 0
            assert len(chosen["candidates"]) == sum(len(v) - 1 for v in SEARCH_SPACE.values())  # every alternative timed
    sizes = tuning["variants"]["int8"]["batch_sizes"]
    assert options_for_batch(sizes, 2) == sizes["1"]["options"]
    assert options_for_batch(sizes, 4096) == sizes["64"]["options"]
    assert options_for_batch({}, 8) == DEFAULT_OPTIONS


def test_session_options_map_the_record():
    record = {**DEFAULT_OPTIONS, "intra_op_num_threads": 1, "allow_spinning": False,
              "graph_optimization_level": "ORT_ENABLE_EXTENDED", "execution_mode": "ORT_PARALLEL"}
    options = session_options(record)
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert options.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_tune_refuses_an_unknown_variant(exported, capsys):
    assert tune_main(["--artifacts", str(exported), "--variants", "int4"]) == 2
    assert "unknown ['int4']" in capsys.readouterr().err


def test_otto_variants_pass_on_the_validation_rows(otto_artifacts):
    report = json.loads((otto_artifacts / "variants.json").read_text())
    assert report["passed"] and report["dataset"] == "otto" and report["held_out"] == "validation"
    for name in ("int8", "fp16"):  # the deployable ones (the int8-dynamic baseline may miss: reported)
        cpu = report["variants"][name]["checks"]["cpu"]
        assert cpu["passed"] and cpu["agreement"] >= TOLERANCES[name].min_agreement and cpu["rows"] > 1000


def test_tune_can_save_the_optimised_graph_for_deployment(exported, tmp_path, mnist):
    out = tmp_path / "artifacts"
    shutil.copytree(exported, out, ignore=shutil.ignore_patterns("deploy", "data", "checkpoints"))
    args = ["--artifacts", str(out), "--variants", "int8", "--batch-sizes", "1", "--seconds", "0.001", "--rounds", "1"]
    assert tune_main([*args, "--save-optimized", "on"]) == 0
    entry = json.loads((out / "ort_tuning.json").read_text())["variants"]["int8"]
    verify(out, ["ort_tuning.json", entry["optimized_file"]])
    optimized = onnx.load(str(out / entry["optimized_file"]))
    assert "QGemm" in {n.op_type for n in optimized.graph.node}  # Q/DQ pairs fused into int8 GEMMs
    inputs = mnist.held_out.inputs.numpy()[:256]
    np.testing.assert_allclose(_probs(out / entry["optimized_file"], inputs), _probs(out / "model.int8.onnx", inputs), atol=1e-6)


def test_variants_refuse_an_unknown_choice(exported, capsys):
    assert variants_main(["--artifacts", str(exported), "--per-channel", "maybe"]) == 2
    assert "--per-channel 'maybe': choose one of auto, on, off" in capsys.readouterr().err


def test_without_float32_on_cuda_the_variants_cuda_checks_are_skipped_with_the_reason(exported, mnist, monkeypatch):
    # ORT without its CUDA provider (the GPU check's device ships the CPU-only wheel): float32 is
    # skipped there, so no variant has a CUDA reference; the CPU checks still decide.
    from export import backends, variants
    on_cpu = backends.onnxruntime

    def no_cuda_provider(path, device, *args, **kwargs):
        if device.type == "cuda":
            return backends.Backend("ort-cuda", "cuda", skipped="CUDAExecutionProvider did not load")
        return on_cpu(path, device, *args, **kwargs)

    monkeypatch.setattr(variants.backends, "onnxruntime", no_cuda_provider)
    made = {name: {} for name in VARIANT_FILES}
    entries, failures, baseline_failures = variants.gate(exported, made, mnist, torch.device("cuda"))
    assert not failures and not baseline_failures
    for name in ("int8", "int8-dynamic", "fp16"):
        cuda = entries[name]["checks"]["cuda"]
        assert cuda == {"status": "skipped", "reason": "float32, the reference, cannot run on cuda: "
                                                       "CUDAExecutionProvider did not load"}
        assert entries[name]["checks"]["cpu"]["status"] == "ran" and entries[name]["passed"]
