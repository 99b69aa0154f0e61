"""The deploy bundle: every file in its manifest, a Triton repository that matches the graph, a
KServe manifest that names it, requirements from pyproject.toml, the chosen variant beside the fp32
reference with its gate numbers and tuned ORT options, and a predictor and server that run where
torch cannot be imported."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib

import onnx
import onnxruntime as ort
import pytest
import yaml

from conftest import MNIST_BUNDLE_MAX_BATCH, REPO
from deploy.batch_policy import BatchPolicy
from deploy.build.__main__ import DeployConfig
from deploy.build.__main__ import run as build_run
from deploy.build.triton import LABELS_FILE, read_config
from deploy.bundle import load_bundle
from handoff.digest import sha256_file
from handoff.errors import PipelineError
from handoff.manifest import read_manifest, record
from handoff.ort_options import options_for_batch, session_options

# Every module of deploy/ and of the hand-off package: each must import where torch cannot.
TORCH_FREE_MODULES = tuple(".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
                           for folder in ("deploy", "handoff", "web", "tools") for path in sorted((REPO / folder).rglob("*.py")))


def copy_artifacts(exported, folder):
    """A private copy of the export (without its bundle), so builds here leave `mnist_bundle` as it is."""
    shutil.copytree(exported, folder, ignore=shutil.ignore_patterns("deploy"))
    return folder


@pytest.fixture(scope="module")
def int8_bundle(exported, tmp_path_factory):
    out = copy_artifacts(exported, tmp_path_factory.mktemp("int8") / "artifacts")
    build_run(DeployConfig(artifacts=str(out), variant="int8", max_batch=MNIST_BUNDLE_MAX_BATCH))
    return out / "deploy"


def test_manifest_lists_every_file_with_its_sha256(mnist_bundle, exported):
    manifest = json.loads((mnist_bundle / "manifest.json").read_text())
    on_disk = {str(p.relative_to(mnist_bundle)) for p in mnist_bundle.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["artifacts"]) == on_disk
    assert {"model.onnx", "requirements.txt", "MODEL_CARD.md", "kserve/inferenceservice.yaml",
            "triton/mnist_mlp/config.pbtxt", "triton/mnist_mlp/1/model.onnx"} <= on_disk
    for name, entry in manifest["artifacts"].items():
        assert (entry["sha256"], entry["bytes"]) == (sha256_file(mnist_bundle / name), (mnist_bundle / name).stat().st_size)
    assert sha256_file(mnist_bundle / "model.onnx") == sha256_file(exported / "model.onnx")
    assert manifest["model"]["model_name"] == "mnist_mlp" and manifest["config"]["deploy"]["max_batch"] == MNIST_BUNDLE_MAX_BATCH
    assert manifest["default_variant"] == "fp32" and list(manifest["variants"]) == ["fp32"]  # the default build


def test_an_int8_bundle_keeps_fp32_as_the_reference_and_serves_int8(int8_bundle, mnist_bundle, exported):
    manifest = json.loads((int8_bundle / "manifest.json").read_text())
    on_disk = {str(p.relative_to(int8_bundle)) for p in int8_bundle.rglob("*") if p.is_file()} - {"manifest.json"}
    assert set(manifest["artifacts"]) == on_disk and {"model.onnx", "model.int8.onnx"} <= on_disk
    assert not {"model.fp16.onnx", "model.int8-dynamic.onnx"} & on_disk
    for name in ("model.onnx", "model.int8.onnx"):
        assert sha256_file(int8_bundle / name) == sha256_file(exported / name) == manifest["artifacts"][name]["sha256"]

    gate = json.loads((exported / "variants.json").read_text())["variants"]["int8"]["checks"]["cpu"]
    fp32, int8 = manifest["variants"]["fp32"], manifest["variants"]["int8"]
    assert manifest["default_variant"] == "int8" and list(manifest["variants"]) == ["fp32", "int8"]
    assert (int8["file"], int8["passed"], int8["tolerance"]) == ("model.int8.onnx", True, gate["tolerance"])
    assert (int8["accuracy"], int8["agreement"], int8["max_abs"]) == (gate["accuracy"], gate["agreement"], gate["max_abs"])
    assert (fp32["file"], fp32["accuracy"], fp32["agreement"]) == ("model.onnx", gate["reference_accuracy"], 1.0)
    assert 0.8 < int8["accuracy"] <= 1 and int8["agreement"] >= 0.99  # the gate's numbers, not placeholders

    tuning = json.loads((exported / "ort_tuning.json").read_text())
    assert manifest["ort_tuning_cpu"] == tuning["cpu"]
    assert manifest["ort_options"] == {v: {size: t["options"] for size, t in tuning["variants"][v]["batch_sizes"].items()}
                                       for v in ("fp32", "int8")}

    triton = int8_bundle / "triton" / "mnist_mlp"
    assert (triton / "1" / "model.onnx").read_bytes() == (int8_bundle / "model.int8.onnx").read_bytes()
    assert (triton / "config.pbtxt").read_text() == (mnist_bundle / "triton" / "mnist_mlp" / "config.pbtxt").read_text()

    card = (int8_bundle / "MODEL_CARD.md").read_text()
    assert "## Variants" in card and "The default is **int8** (`model.int8.onnx`)" in card
    assert f"| fp32 | `model.onnx` | `{fp32['method']}` | {100 * gate['reference_accuracy']:.2f}% | reference |" in card
    assert f"| int8 | `model.int8.onnx` | `{int8['method']}` | {100 * gate['accuracy']:.2f}% | {100 * gate['agreement']:.2f}% |" in card
    assert f"on {tuning['cpu']['model']}" in card and "- int8: batch 1: " in card and "; batch 64: " in card


def test_the_bundle_runs_each_batch_size_with_the_options_tuned_for_it(int8_bundle, exported):
    tuned = json.loads((exported / "ort_tuning.json").read_text())["variants"]
    assert load_bundle(int8_bundle).variant == "int8"  # the bundle's default_variant
    for variant in ("int8", "fp32"):
        bundle = load_bundle(int8_bundle, variant)
        records = {size: options_for_batch(tuned[variant]["batch_sizes"], size) for size in (1, 64)}
        for size, wanted in records.items():
            assert bundle.options_for(size) == wanted
            # what ORT made of the options, against a session opened from the wanted record (ORT may
            # adjust a setting, e.g. ORT_PARALLEL without an inter-op pool runs sequentially)
            reference = ort.InferenceSession(str(int8_bundle / bundle.file), session_options(wanted),
                                             providers=["CPUExecutionProvider"])
            assert effective(bundle.session_for(size)) == effective(reference)
            assert effective(reference)[0] == wanted["intra_op_num_threads"]
        # one session per distinct record: batch sizes tuned alike share one
        assert (bundle.session_for(1) is bundle.session_for(64)) == (records[1] == records[64])
        assert f"variant {variant} ({int8_bundle / bundle.file})" in bundle.summary()


def effective(session: ort.InferenceSession) -> tuple:
    options = session.get_session_options()
    return (options.intra_op_num_threads, options.graph_optimization_level, options.execution_mode,
            options.enable_mem_pattern, options.get_session_config_entry("session.intra_op.allow_spinning"))


@pytest.mark.parametrize("variant, spoil, message", [
    ("int9", None, r"unknown variant 'int9'; .*variants.json offers: fp32, (.*, )?int8\b"),
    ("int8", "tamper", r"model.int8.onnx: sha256 .* does not match manifest.json"),
    ("int8", "fail", r"variant 'int8' failed its gate \(.*\); choose one that passed: fp32"),
], ids=["unknown", "tampered", "failed-gate"])
def test_a_bad_variant_is_not_deployed(exported, tmp_path, variant, spoil, message):
    out = copy_artifacts(exported, tmp_path / "artifacts")
    if spoil == "tamper":  # changed after variants.json was written and recorded
        data = bytearray((out / "model.int8.onnx").read_bytes())
        data[-100] ^= 1
        (out / "model.int8.onnx").write_bytes(bytes(data))
    if spoil == "fail":
        report = json.loads((out / "variants.json").read_text())
        report["variants"]["int8"]["passed"] = False
        report["failures"].append("int8 (ort-cpu, mnist test): argmax agrees with float32 on 98.00% of rows, needs 99.5%")
        (out / "variants.json").write_text(json.dumps(report))
        record(out, ["variants.json"], "python -m export.variants")
    with pytest.raises(PipelineError, match=message):
        build_run(DeployConfig(artifacts=str(out), variant=variant))
    assert not (out / "deploy").exists()


def test_triton_config_parses_with_tritons_schema_and_matches_the_graph(mnist_bundle):
    config = read_config(mnist_bundle / "triton" / "mnist_mlp" / "config.pbtxt")
    graph = onnx.load(str(mnist_bundle / "triton" / "mnist_mlp" / "1" / "model.onnx")).graph
    assert (config.name, config.platform, config.max_batch_size) == ("mnist_mlp", "onnxruntime_onnx", MNIST_BUNDLE_MAX_BATCH)
    for declared, value in [(config.input[0], graph.input[0]), (config.output[0], graph.output[0])]:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        assert declared.name == value.name and list(declared.dims) == dims[1:]  # batch dim left out
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and declared.data_type == 11  # TYPE_FP32
    assert (config.input[0].name, list(config.input[0].dims), list(config.output[0].dims)) == ("image", [1, 28, 28], [10])
    deploy = read_manifest(mnist_bundle)["config"]["deploy"]  # what mlp-serve batches with, by default
    batching = config.dynamic_batching
    assert (batching.max_queue_delay_microseconds, batching.default_queue_policy.max_queue_size) == \
        (deploy["max_queue_delay_us"], deploy["max_queue_size"]) == (BatchPolicy.max_queue_delay_us, BatchPolicy.max_queue_size)
    assert [(g.kind, g.count) for g in config.instance_group] == [(2, 1)]  # KIND_CPU
    labels = (mnist_bundle / "triton" / "mnist_mlp" / LABELS_FILE).read_text().splitlines()
    assert config.output[0].label_filename == LABELS_FILE and labels == [str(d) for d in range(10)]


def test_a_misspelt_triton_field_is_refused(tmp_path):
    (tmp_path / "config.pbtxt").write_text('name: "m"\nplatfrom: "onnxruntime_onnx"\n')
    with pytest.raises(PipelineError, match="not a valid Triton model config.*platfrom"):
        read_config(tmp_path / "config.pbtxt")


def test_kserve_manifest_parses_and_names_the_triton_repository(mnist_bundle):
    service = yaml.safe_load((mnist_bundle / "kserve" / "inferenceservice.yaml").read_text())
    assert (service["apiVersion"], service["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    assert service["metadata"]["name"] == "mnist-mlp"  # Kubernetes name of model mnist_mlp
    model = service["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton" and model["protocolVersion"] == "v2"
    assert model["storageUri"] == DeployConfig().storage_uri


def test_requirements_are_pyprojects_deploy_extra_without_torch(mnist_bundle):
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["deploy"]
    lines = [line for line in (mnist_bundle / "requirements.txt").read_text().splitlines() if not line.startswith("#")]
    assert [line.replace('"', "'") for line in lines] == extra
    assert not [line for line in lines if line.split("=")[0].strip() in ("torch", "torchvision")]


def test_model_card_has_the_usual_sections_and_real_numbers(mnist_bundle, exported):
    card = (mnist_bundle / "MODEL_CARD.md").read_text()
    for section in ("Model details", "Intended use", "Out-of-scope use", "Training data and procedure",
                    "Evaluation data and metrics", "Input and output contract", "Limitations", "Versions",
                    "Benchmark headline", "How to get started"):
        assert f"## {section}" in card
    accuracy = json.loads((exported / "train_metrics.json").read_text())["test_accuracy"]
    assert f"test_accuracy: {accuracy:.4f}" in card and "Parity gate (`make export`): **passed**" in card
    # the fast recipe's label smoothing 0.2 over 10 classes: a clean digit's top probability is near 0.82
    assert "label smoothing 0.2: the loss is lowest when the true class gets 1 - 0.2 + 0.2/10 = 0.82" in card


def test_a_failed_parity_gate_is_not_deployed(exported, tmp_path):
    out = tmp_path / "artifacts"
    shutil.copytree(exported, out, ignore=shutil.ignore_patterns("deploy"))
    parity = json.loads((out / "parity.json").read_text())
    (out / "parity.json").write_text(json.dumps({**parity, "passed": False}))
    record(out, ["parity.json"], "python -m export.parity")
    with pytest.raises(PipelineError, match="the parity gate failed"):
        build_run(DeployConfig(artifacts=str(out)))
    assert not (out / "deploy").exists()


def test_shared_helpers_and_deploy_import_without_torch(no_torch_env):
    script = f"""
import importlib, sys
from sitecustomize import BLOCKER
for name in {TORCH_FREE_MODULES!r}:
    importlib.import_module(name)
assert not BLOCKER.attempts and "torch" not in sys.modules, BLOCKER.attempts
print("torch-free ok")
"""
    done = subprocess.run([sys.executable, "-c", script], env=no_torch_env, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("torch-free ok\n")
