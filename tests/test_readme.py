"""The README's requests work as written: its block of `curl` and `mlp-predict` commands, run by bash
in a folder laid out as a clone after `make train export deploy` (artifacts/data, artifacts/deploy,
.venv/bin), against a running mlp-serve (the only change: its free port for the README's 8000)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, running_server

pytestmark = pytest.mark.xdist_group("servers")  # with the other server tests: their ports are picked free, then bound


def readme_requests() -> str:
    """The bash block of the README's "Use the model" section that sends the requests."""
    section = (REPO / "README.md").read_text().split("## Use the model", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return next(block for block in blocks if "curl" in block)


def test_the_readme_requests_answer_as_the_model_does(mnist_bundle, data_dir, cli_env, tmp_path):
    (tmp_path / "artifacts" / "data").mkdir(parents=True)
    (tmp_path / "artifacts" / "data" / "MNIST").symlink_to(data_dir / "MNIST")
    (tmp_path / "artifacts" / "deploy").symlink_to(mnist_bundle)
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    with running_server(mnist_bundle) as address:
        script = readme_requests().replace("127.0.0.1:8000", address)
        done = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=cli_env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    json_answer, binary_answer, *predicted = done.stdout.splitlines()
    probs = [np.array(json.loads(answer)["outputs"][0]["data"]) for answer in (json_answer, binary_answer)]
    assert [p.argmax() for p in probs] == [7, 7]  # the first test image is a 7
    assert np.abs(probs[0] - probs[1]).max() < 1e-6  # the same float32 values, sent as text or as bytes
    assert len(predicted) == 3 and predicted[0].startswith("artifacts/data/MNIST/raw/t10k-images-idx3-ubyte[0]: 7 ")
