"""The Otto bundle, built with its int8 variant as the default, through the same deploy path:
Triton config from its graph, mlp-predict on CSV rows (no target column), and an infer through the
real server, all torch-free."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import tritonclient.http as triton_http

from conftest import REPO, running_server
from deploy.build.triton import read_config
from deploy.bundle import load_bundle
from deploy.errors import ExitCode
from handoff.otto_csv import CLASSES, FEATURES, read_otto_csv

# One worker runs these (pytest-xdist --dist loadgroup): their servers' ports are picked free, then bound.
pytestmark = pytest.mark.xdist_group("servers")

ROWS = 5


@pytest.fixture(scope="module")
def products(otto_csv, tmp_path_factory):
    """ROWS products from the training file, as a caller's CSV: id and features, no target."""
    features = read_otto_csv(otto_csv).features[:ROWS]
    path = tmp_path_factory.mktemp("otto-rows") / "products.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", *FEATURES])
        writer.writerows([[100 + i, *(int(v) for v in row)] for i, row in enumerate(features)])
    return path, features


def test_triton_config_is_read_from_the_otto_graph(otto_bundle):
    config = read_config(otto_bundle / "triton" / "otto_mlp" / "config.pbtxt")
    assert config.name == "otto_mlp" and config.input[0].name == "features"
    assert (list(config.input[0].dims), list(config.output[0].dims)) == ([93], [9])


def test_predict_csv_rows_then_one_infer_through_the_server(otto_bundle, products, no_torch_env):
    path, features = products
    manifest = json.loads((otto_bundle / "manifest.json").read_text())
    assert manifest["default_variant"] == "int8" and {"model.onnx", "model.int8.onnx"} <= set(manifest["artifacts"])
    assert (otto_bundle / "triton" / "otto_mlp" / "1" / "model.onnx").read_bytes() == (otto_bundle / "model.int8.onnx").read_bytes()
    done = subprocess.run([sys.executable, "-m", "deploy.predict", "--bundle", str(otto_bundle), "--json", "--verbose", str(path)],
                          capture_output=True, text=True, env=no_torch_env, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "variant int8 (" in done.stderr and "ORT options: batch 1: " in done.stderr
    rows = json.loads(done.stdout)
    assert [r["id"] for r in rows] == [str(100 + i) for i in range(ROWS)] and {r["class"] for r in rows} <= set(CLASSES)
    predicted = np.array([[r["probs"][c] for c in CLASSES] for r in rows], dtype=np.float32)
    np.testing.assert_allclose(predicted, load_bundle(otto_bundle).predict(features), atol=1e-7)

    with running_server(otto_bundle) as url:
        tensor = triton_http.InferInput("features", [1, len(FEATURES)], "FP32")
        tensor.set_data_from_numpy(features[:1])
        probs = triton_http.InferenceServerClient(url).infer("otto_mlp", [tensor]).as_numpy("probs")
    np.testing.assert_allclose(probs, predicted[:1], atol=1e-7)


def test_a_csv_without_the_training_columns_is_refused(otto_bundle, no_torch_env, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,feat_1\n1,0\n")
    done = subprocess.run([sys.executable, "-m", "deploy.predict", "--bundle", str(otto_bundle), str(bad)],
                          capture_output=True, text=True, env=no_torch_env, cwd=REPO, timeout=120)
    assert done.returncode == ExitCode.BAD_CSV and done.stderr.startswith(f"error: {bad}") and "missing" in done.stderr
