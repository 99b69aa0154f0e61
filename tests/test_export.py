"""Export stage: TorchScript and ONNX artifacts, their contract, and the parity gate (the torch.export
artifacts: tests/test_export_torch.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from torch.torch_version import TorchVersion

from conftest import BLOCK_PROJECT, fewer_gate_rows
from export.backends import aoti, eager, exported_program, onnxruntime, torchscript
from export.head import load_head
from export.parity import ParityConfig
from export.parity import main as parity_main
from export.parity import run as parity_run
from handoff.digest import sha256_file
from handoff.manifest import record


def test_parity_passes_and_manifest_lists_every_artifact(exported):
    parity = json.loads((exported / "parity.json").read_text())
    assert parity["passed"] is True and parity["failures"] == []
    assert {p["candidate"] for p in parity["pairs"]} == {"torchscript-cpu", "exported-cpu", "aoti-cpu", "ort-cpu"}
    for pair in parity["pairs"]:
        for stats in pair["by_case"].values():
            assert stats["argmax_agree"] == stats["images"]
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["parity"]["passed"] is True
    for name, entry in manifest["artifacts"].items():
        assert entry["sha256"] == sha256_file(exported / name), name
    assert manifest["config"]["train"]["recipe"]["name"] == "fast"


@pytest.mark.skipif(TorchVersion(torch.__version__) < "2.10", reason=f"torch {torch.__version__} does not deprecate TorchScript yet")
def test_torchscript_deprecation_warnings_are_recorded(exported):
    report = json.loads((exported / "export_report.json").read_text())
    messages = [w["message"] for w in report["torchscript"]["warnings"]]
    assert any("deprecated" in m for m in messages), messages


def test_onnx_file_is_self_contained_and_checked(exported):
    model = onnx.load(str(exported / "model.onnx"), load_external_data=False)
    onnx.checker.check_model(model, full_check=True)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["probs"]
    assert not list(exported.glob("*.data"))


@pytest.mark.parametrize("batch", [1, 7, 513])
def test_dynamic_batch_runs_through_every_artifact(exported, mnist, batch):
    images = mnist.held_out.inputs[:batch].numpy()
    head, _ = load_head(exported / "model.pt")
    cpu = torch.device("cpu")
    expected = eager(head, cpu).run(images)
    for backend in (torchscript(exported / "model.torchscript.pt", cpu), exported_program(exported / "model.pt2", cpu),
                    aoti(exported / "model.aoti.pt2", cpu), onnxruntime(exported / "model.onnx", cpu)):
        probs = backend.run(images)
        assert probs.shape == (batch, 10) and probs.dtype == np.float32, backend.name
        np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(probs, expected, atol=1e-5, err_msg=backend.name)


def test_onnx_runs_without_torch_and_carries_metadata(exported, mnist, tmp_path):
    np.save(tmp_path / "images.npy", mnist.held_out.inputs[:100].numpy())
    np.save(tmp_path / "labels.npy", mnist.held_out.labels[:100].numpy())
    script = BLOCK_PROJECT + f"""
import json, numpy as np, onnxruntime as ort
session = ort.InferenceSession({str(exported / 'model.onnx')!r}, providers=["CPUExecutionProvider"])
probs = session.run(["probs"], {{"image": np.load({str(tmp_path / 'images.npy')!r})}})[0]
meta = session.get_modelmeta()
print(json.dumps({{"torch_loaded": "torch" in sys.modules, "shape": probs.shape,
    "correct": int((probs.argmax(1) == np.load({str(tmp_path / 'labels.npy')!r})).sum()),
    "graph": meta.graph_name, "version": meta.version, "props": meta.custom_metadata_map}}))
"""
    run = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path)
    result = json.loads(run.stdout)
    assert result["torch_loaded"] is False
    assert result["shape"] == [100, 10] and result["correct"] >= 90
    props = result["props"]
    assert (result["graph"], result["version"], props["model_name"]) == ("mnist_mlp", 1, "mnist_mlp")
    assert props["source_checkpoint_sha256"] == sha256_file(exported / "model.pt")
    assert json.loads(props["class_labels"]) == [str(d) for d in range(10)]
    assert float(props["test_accuracy"]) >= 0.9
    assert "N x 1 x 28 x 28" in props["input_contract"]
    assert {"torch_version", "onnx_version", "opset", "output_contract"} <= props.keys()


def test_torchscript_loads_where_the_project_cannot_be_imported(exported, mnist, tmp_path):
    np.save(tmp_path / "images.npy", mnist.held_out.inputs[:7].numpy())
    script = BLOCK_PROJECT + f"""
import numpy as np, torch
try:
    import pipeline
    raise SystemExit("the project is importable")
except ImportError:
    pass
module = torch.jit.load({str(exported / 'model.torchscript.pt')!r})
probs = module(torch.from_numpy(np.load({str(tmp_path / 'images.npy')!r})))
print(tuple(probs.shape), round(float(probs.sum()), 4))
"""
    run = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert run.stdout.strip() == "(7, 10) 7.0"


def test_perturbed_onnx_weight_fails_the_gate(exported, data_dir, tmp_path, capsys, monkeypatch):
    fewer_gate_rows(monkeypatch)  # the perturbation shows on the first rows as on all of them
    perturbed = tmp_path / "artifacts"
    shutil.copytree(exported, perturbed)
    model = onnx.load(str(perturbed / "model.onnx"))
    # One parameter: the output bias of class 0. (A first-layer weight can be invisible: if its
    # hidden unit is dead for every input, the function really is unchanged and the gate rightly passes.)
    bias = next(t for t in model.graph.initializer if t.name == "model.out.bias")
    values = onnx.numpy_helper.to_array(bias).copy()
    values[0] += 0.5
    bias.CopyFrom(onnx.numpy_helper.from_array(values, bias.name))
    onnx.save(model, str(perturbed / "model.onnx"))
    # As if the exporter itself had written it: the manifest check passes, the numbers must not.
    record(perturbed, ["model.onnx"], "test: one weight perturbed")

    assert parity_main(["--artifacts", str(perturbed), "--device", "cpu", "--data-dir", str(data_dir)]) == 2
    error = capsys.readouterr().err.splitlines()[-1]  # after the recorded TorchScript deprecation warnings
    assert error.startswith("error: parity failed: ort-cpu vs eager-cpu at batch 1 (mnist-test): max abs error")
    assert json.loads((perturbed / "parity.json").read_text())["passed"] is False


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_parity_covers_the_cuda_backends(exported, data_dir, tmp_path):
    out = tmp_path / "artifacts"
    shutil.copytree(exported, out)
    parity_run(ParityConfig(artifacts=str(out), device="cuda", data_dir=str(data_dir)))
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] is True
    backends = parity["backends"]
    assert backends["eager-cuda"]["status"] == backends["torchscript-cuda"]["status"] == "ran"
    ort_cuda = backends["ort-cuda"]
    assert ort_cuda["status"] == "ran" or ort_cuda["reason"].startswith("CUDAExecutionProvider did not load")
