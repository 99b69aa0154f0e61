"""The torch.export-era artifacts: model.pt2 (ExportedProgram) and model.aoti.pt2 (AOTInductor), through
the same gate as TorchScript and ONNX, loadable without the project, refused on a CPU they were not
compiled for, and the export surviving a torch without TorchScript."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch._inductor.runtime.cache_dir_utils import cache_dir

import export.__main__ as export_main
from conftest import BLOCK_PROJECT, fewer_gate_rows
from export import aoti_package
from export.__main__ import ExportConfig
from export.__main__ import run as export_run
from export.backends import aoti
from export.head import load_head
from export.parity import ABS_TOL, ParityConfig
from export.parity import run as parity_run
from export.to_aoti import export_aoti
from handoff import cpu
from handoff.digest import sha256_file
from handoff.errors import PipelineError
from handoff.idx import read_float_idx
from handoff.reports import read_export

TORCH_SIDE = {"torchscript-cpu", "exported-cpu", "aoti-cpu"}


def test_every_torch_artifact_passes_the_gate_at_every_batch(exported):
    parity = json.loads((exported / "parity.json").read_text())
    assert parity["passed"] and parity["batch_sizes"] == [1, 2, 64, 1024]
    pairs = {p["candidate"]: p for p in parity["pairs"]}
    assert set(pairs) == TORCH_SIDE | {"ort-cpu"}
    for name in TORCH_SIDE:
        assert pairs[name]["passed"] and pairs[name]["max_abs"] <= ABS_TOL, name
        assert len(pairs[name]["by_case"]) == 2 * 4  # held-out and random inputs, at each batch size
        assert all(s["argmax_agree"] == s["images"] for s in pairs[name]["by_case"].values()), name


def test_manifest_records_the_torch_artifacts_and_the_package_cpu(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    for name in ("model.pt2", "model.aoti.pt2", "held_out_probs.idx"):
        assert manifest["artifacts"][name]["sha256"] == sha256_file(exported / name), name
    package = manifest["exports"]["model.aoti.pt2"]
    assert package["torch"] == manifest["exports"]["model.pt2"]["torch"] == str(torch.__version__)
    assert package["device"] == "cpu" and package["cpu_isa_flags"] == cpu.isa_flags() and package["cpu_isa"]
    report = json.loads((exported / "export_report.json").read_text())["aoti"]
    assert report["seconds"] > 0 and set(report["cold_start"]) == {"public", "direct"}
    for cold in report["cold_start"].values():
        assert 0 < cold["load"] < cold["total"] and cold["first_call"] > 0


def test_pt2_and_aoti_load_where_the_project_cannot_be_imported(exported, tmp_path):
    """Plain torch, no project code, the gate's probabilities: what a user's own service does."""
    held_out = np.load(exported / "held_out.npz")["inputs"][:64]
    np.save(tmp_path / "rows.npy", held_out)
    script = BLOCK_PROJECT + f"""
import numpy as np, torch
for name in ("pipeline", "export"):
    try:
        __import__(name)
        raise SystemExit(name + " is importable")
    except ImportError:
        pass
rows = torch.from_numpy(np.load({str(tmp_path / 'rows.npy')!r}))
extra = {{"metadata.json": ""}}
program = torch.export.load({str(exported / 'model.pt2')!r}, extra_files=extra)
package = torch._inductor.aoti_load_package({str(exported / 'model.aoti.pt2')!r})
with torch.inference_mode():
    np.save("exported.npy", program.module()(rows).numpy())
    np.save("aoti.npy", package(rows).numpy())
print(extra["metadata.json"])
"""
    run = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, check=True, cwd=tmp_path)
    reference = read_float_idx(exported / "held_out_probs.idx")[:64]
    for name in ("exported", "aoti"):
        probs = np.load(tmp_path / f"{name}.npy")
        assert np.abs(probs - reference).max() <= ABS_TOL, name
        assert (probs.argmax(1) == reference.argmax(1)).all(), name
    metadata = json.loads(run.stdout.strip().splitlines()[-1])
    assert metadata["model_name"] == "mnist_mlp" and metadata["input_shape"] == "1,28,28"


def test_a_package_compiled_for_another_cpu_is_refused(exported, monkeypatch):
    here = (cpu._cpuinfo_field("flags") or "").split()
    if "avx2" not in here:
        pytest.skip("the package of this CPU does not use avx2: nothing to take away")
    monkeypatch.setattr(cpu, "_cpuinfo_field", lambda name: " ".join(f for f in here if f != "avx2") if name == "flags" else None)
    with pytest.raises(PipelineError, match=r"compiled for another CPU .* whose instructions avx2 this CPU lacks"):
        aoti(exported / "model.aoti.pt2", torch.device("cpu"))


def test_the_reference_probabilities_are_the_gates(exported, mnist):
    probs = read_float_idx(exported / "held_out_probs.idx")
    assert probs.shape == (len(mnist.held_out), 10) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1, atol=1e-5)
    labels = mnist.held_out.labels.numpy()
    accuracy = json.loads((exported / "parity.json").read_text())["backends"]["eager-cpu"]["accuracy"]["1024"]
    assert (probs.argmax(1) == labels).mean() == pytest.approx(accuracy)


def test_export_carries_on_when_torch_has_no_torchscript(exported, data_dir, tmp_path, monkeypatch, capsys):
    """As if torch had removed TorchScript: script and save raise; export, gate and manifest go on."""
    out = tmp_path / "artifacts"
    shutil.copytree(exported, out, ignore=shutil.ignore_patterns("deploy", "data"))

    def removed(*args, **kwargs):
        raise RuntimeError("TorchScript has been removed; use torch.export")

    monkeypatch.setattr(torch.jit, "script", removed)
    monkeypatch.setattr(torch.jit, "save", removed)
    # The AOTInductor compile of this same model.pt is the copied package (the fixture compiled it;
    # compiling again would take half a minute and test nothing about TorchScript).
    compiled = json.loads((exported / "export_report.json").read_text())["aoti"]
    monkeypatch.setattr(export_main, "export_aoti", lambda *args, **kwargs: compiled)
    export_run(ExportConfig(artifacts=str(out), device="cpu"))
    printed = capsys.readouterr().out
    assert "TorchScript is unavailable in torch" in printed and "TorchScript has been removed" in printed
    assert not (out / "model.torchscript.pt").exists()
    report = json.loads((out / "export_report.json").read_text())
    assert report["torchscript"]["status"] == "unavailable" and report["torchscript"]["file"] is None
    assert "model.torchscript.pt" not in json.loads((out / "manifest.json").read_text())["artifacts"]
    assert read_export(out).torch_files == ["model.pt2", "model.aoti.pt2"]
    assert "TorchScript has been removed" in read_export(out).torchscript_missing

    fewer_gate_rows(monkeypatch)  # which backends the gate runs is the point, not every row
    parity_run(ParityConfig(artifacts=str(out), device="cpu", data_dir=str(data_dir)))
    parity = json.loads((out / "parity.json").read_text())
    assert parity["passed"] and {p["candidate"] for p in parity["pairs"]} == {"exported-cpu", "aoti-cpu", "ort-cpu"}


def test_aoti_metadata_is_read_without_loading(exported):
    metadata = aoti_package.package_metadata(exported / "model.aoti.pt2")
    assert metadata["AOTI_DEVICE_KEY"] == "cpu" and metadata["model_name"] == "mnist_mlp"
    assert metadata[aoti_package.CPU_ISA_FLAGS].split() == cpu.isa_flags()


def test_the_package_holds_a_model_for_any_batch_and_one_for_single_rows(exported):
    """Both compiled models answer a row as eager does. The single-row one answers only the first
    row of a larger batch, without an error, so open_package must send it single rows alone."""
    path = exported / "model.aoti.pt2"
    head, payload = load_head(exported / "model.pt")
    rows = torch.rand(2, *payload["input_shape"], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = head(rows)
    loaders = {name: torch._C._aoti.AOTIModelPackageLoader(str(path), name, False, 1, -1)
               for name in (aoti_package.MODEL, aoti_package.BATCH1_MODEL)}
    for loader in loaders.values():
        torch.testing.assert_close(loader.run([rows[:1]])[0], expected[:1], atol=ABS_TOL, rtol=0)
    assert loaders[aoti_package.BATCH1_MODEL].run([rows])[0].shape == (1, 10)
    run = aoti_package.open_package(path, aoti_package.package_metadata(path))
    torch.testing.assert_close(run(rows), expected, atol=ABS_TOL, rtol=0)
    torch.testing.assert_close(run(rows[1:]), expected[1:], atol=ABS_TOL, rtol=0)
    assert read_export(exported).aoti["models"].keys() == {aoti_package.MODEL, aoti_package.BATCH1_MODEL}


def rewritten_package(source, out, kernel_metadata: bytes):
    """A copy of the package `source` at `out` whose kernel file's metadata copy is `kernel_metadata`,
    listed first (as a zip may list it)."""
    with zipfile.ZipFile(source) as package:
        entries = {info.filename: package.read(info) for info in package.infolist()}
    kernel = next(name for name in entries if name.endswith(".kernel_metadata.json"))
    with zipfile.ZipFile(out, "w") as package:
        package.writestr(kernel, kernel_metadata)
        for name, data in entries.items():
            if name != kernel:
                package.writestr(name, data)
    return out


def test_a_package_whose_metadata_copies_disagree_is_refused(exported, tmp_path):
    """The C++ loader reads the copy beside the last `.cpp` in the zip: an empty one (what two compiles
    sharing Inductor's cache once packaged) or another model's is refused, an equal one read."""
    source = exported / "model.aoti.pt2"
    ours = aoti_package.package_metadata(source)
    same = rewritten_package(source, tmp_path / "same.pt2", json.dumps(ours).encode())
    assert aoti_package.package_metadata(same) == ours
    empty = rewritten_package(source, tmp_path / "empty.pt2", b"")
    with pytest.raises(PipelineError, match=r"not a readable AOTInductor package"):
        aoti_package.package_metadata(empty)
    other = rewritten_package(source, tmp_path / "other.pt2", json.dumps({**ours, "model_name": "otto_mlp"}).encode())
    with pytest.raises(PipelineError, match=r"its metadata files disagree .*kernel_metadata.json"):
        aoti_package.package_metadata(other)


def test_the_compile_writes_its_files_in_a_cache_of_its_own(exported, monkeypatch, tmp_path):
    """Two compiles of one architecture at once would share the default cache's files (export/to_aoti.py)."""
    seen = []

    def compile_model(graph, args, kwargs, options):
        seen.append(os.environ["TORCHINDUCTOR_CACHE_DIR"])
        raise RuntimeError("stop after seeing the cache")

    default = cache_dir()
    monkeypatch.setattr(torch._inductor, "aot_compile", compile_model)
    head, payload = load_head(exported / "model.pt")
    with pytest.raises(PipelineError, match="stop after seeing the cache"):
        export_aoti(head, payload, {}, torch.device("cpu"), False, tmp_path / "model.aoti.pt2")
    assert len(seen) == 1 and seen[0] != default and not Path(seen[0]).exists()
    assert cache_dir() == default


def test_a_loader_crash_in_the_fresh_process_is_reported_with_its_signal_and_stack(monkeypatch, tmp_path):
    """A package whose loader dies by a signal (seen: SIGSEGV inside AOTInductor's loader on the GPU
    machine's torch) fails the export naming the signal and faulthandler's Python stack, not an empty
    message. The 'interpreter' here crashes the same way, with the flags cold_start gives it."""
    import export.to_aoti as to_aoti

    crashing = tmp_path / "python"
    crashing.write_text(f'#!/bin/sh\nexec {sys.executable} "$1" "$2" -c "import ctypes; ctypes.string_at(0)"\n')
    crashing.chmod(0o755)
    monkeypatch.setattr(to_aoti.sys, "executable", str(crashing))
    with pytest.raises(PipelineError, match=r"(?s)killed by SIGSEGV.*Fatal Python error: Segmentation fault"):
        to_aoti.cold_start(tmp_path / "model.aoti.pt2")
    assert to_aoti.exit_reason(2) == "exit status 2"


def test_the_single_row_model_tunes_the_cpp_template_alone_only_where_it_can_run(monkeypatch):
    """Where Inductor knows no vector ISA its C++ GEMM template offers no kernel, and CPP alone would
    leave the compile no choice at all: ATen stays beside it there, and on CUDA."""
    import export.to_aoti as to_aoti
    from torch._inductor import cpu_vec_isa

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    if cpu_vec_isa.pick_vec_isa():
        assert to_aoti.batch1_options(cpu)["max_autotune_gemm_backends"] == "CPP"
    assert to_aoti.batch1_options(cuda) == to_aoti.AUTOTUNE_CONFIGS
    monkeypatch.setattr(to_aoti, "pick_vec_isa", lambda: cpu_vec_isa.invalid_vec_isa)
    assert to_aoti.batch1_options(cpu) == to_aoti.AUTOTUNE_CONFIGS
