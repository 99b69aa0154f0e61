"""The deploy bundle: every file in its manifest, a Triton repository that matches the graph, a
KServe manifest that names it, requirements from pyproject.toml, and a predictor and server that
run where torch cannot be imported."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib

import onnx
import pytest
import yaml

from conftest import MNIST_BUNDLE_MAX_BATCH, REPO
from deploy.build import DeployConfig
from deploy.build import run as build_run
from deploy.triton import LABELS_FILE, read_config
from pipeline.digest import sha256_file
from pipeline.errors import PipelineError
from pipeline.manifest import record

TORCH_FREE_MODULES = ("deploy.bundle", "deploy.inputs", "deploy.predict", "deploy.protocol", "deploy.server",
                      "deploy.build", "deploy.triton", "deploy.model_card", "pipeline.manifest", "pipeline.atomic",
                      "pipeline.cli", "pipeline.datasets.idx", "pipeline.datasets.otto_csv")


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


def test_triton_config_parses_with_tritons_schema_and_matches_the_graph(mnist_bundle):
    config = read_config(mnist_bundle / "triton" / "mnist_mlp" / "config.pbtxt")
    graph = onnx.load(str(mnist_bundle / "triton" / "mnist_mlp" / "1" / "model.onnx")).graph
    assert (config.name, config.platform, config.max_batch_size) == ("mnist_mlp", "onnxruntime_onnx", MNIST_BUNDLE_MAX_BATCH)
    for declared, value in [(config.input[0], graph.input[0]), (config.output[0], graph.output[0])]:
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim]
        assert declared.name == value.name and list(declared.dims) == dims[1:]  # batch dim left out
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT and declared.data_type == 11  # TYPE_FP32
    assert (config.input[0].name, list(config.input[0].dims), list(config.output[0].dims)) == ("image", [1, 28, 28], [10])
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
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
