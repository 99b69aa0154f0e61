"""The C++ loader (cpp/mlp_load.cpp, `make cpp`): built against the torch wheel's libtorch, it loads
model.aoti.pt2 and model.torchscript.pt without Python and must agree with the parity gate on every
MNIST test image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, shared_folder


@pytest.fixture(scope="session")
def cpp_loader(tmp_path_factory) -> Path:
    """`make` of the loader alone (CPP_LOADER in a shared folder), once per run."""
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        pytest.skip("no C++ compiler (g++) on this machine")

    def build(folder: Path) -> None:
        subprocess.run(["make", "-s", f"CPP_LOADER={folder / 'mlp-load'}", f"PY={sys.executable}", str(folder / "mlp-load")],
                       cwd=REPO, check=True, capture_output=True)

    return shared_folder(tmp_path_factory, "cpp", build) / "mlp-load"


def test_cpp_loader_agrees_with_the_gate_on_every_test_image(cpp_loader, exported, data_dir, tmp_path):
    raw = data_dir / "MNIST" / "raw"
    results = tmp_path / "cpp.json"
    run = subprocess.run(
        [str(cpp_loader), "--images", str(raw / "t10k-images-idx3-ubyte"), "--labels", str(raw / "t10k-labels-idx1-ubyte"),
         "--reference", str(exported / "held_out_probs.idx"), "--latency-rows", "100", "--json", str(results),
         str(exported / "model.aoti.pt2"), str(exported / "model.torchscript.pt")],
        capture_output=True, text=True, check=True)
    assert run.stdout.count("agreement with the Python gate 10000/10000") == 2, run.stdout
    measured = json.loads(results.read_text())["artifacts"]
    gate_accuracy = json.loads((exported / "parity.json").read_text())["backends"]["eager-cpu"]["accuracy"]["1024"]
    for name, runtime in (("model.aoti.pt2", "aoti"), ("model.torchscript.pt", "torchscript")):
        entry = measured[name]
        assert entry["runtime"] == runtime and entry["agree"] == entry["rows"] == 10000
        assert entry["accuracy"] == pytest.approx(gate_accuracy, abs=1e-9) and entry["max_abs"] <= 1e-5
        assert entry["batch1_p50_us"] > 0


def test_cpp_loader_refuses_a_missing_file(cpp_loader, exported, data_dir):
    raw = data_dir / "MNIST" / "raw"
    run = subprocess.run(
        [str(cpp_loader), "--images", str(raw / "t10k-images-idx3-ubyte"), "--labels", str(raw / "t10k-labels-idx1-ubyte"),
         "--reference", str(exported / "no-such.idx"), str(exported / "model.aoti.pt2")],
        capture_output=True, text=True, check=False)
    assert run.returncode == 1 and run.stderr.strip() == f"mlp-load: {exported / 'no-such.idx'}: cannot open"
