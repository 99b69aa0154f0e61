"""The Make targets end to end: artifacts written, and rebuilt exactly when their inputs change."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from conftest import REPO
from pipeline.checkpoint import load_checkpoint
from pipeline.evaluation import evaluate
from pipeline.handoff import artifacts


def test_make_help_lists_the_verbs_and_reading_the_makefile_writes_nothing(tmp_path):
    run = subprocess.run(["make", "-C", str(REPO), "help", f"ARTIFACTS={tmp_path}"], capture_output=True, text=True, check=True)
    for verb in ("train", "export", "tune", "deploy", "web", "serve", "bench", "bench-study", "test", "setup", "clean"):
        assert f"make {verb} " in run.stdout
    assert "changing only them does not retrain" in run.stdout  # DEVICE, CAPTURE, NPROC: where, not which model
    assert list(tmp_path.iterdir()) == []


def test_the_makefile_names_only_the_artifacts_the_stages_name():
    """Every file a rule makes is one pipeline/handoff/artifacts.py names (the Makefile cannot import it)."""
    text = (REPO / "Makefile").read_text()
    named = {*(v for k, v in vars(artifacts).items() if k.isupper() and isinstance(v, str)), *artifacts.VARIANT_FILES.values()}
    in_makefile = set(re.findall(r"\$\(ARTIFACTS\)/([\w.-]+(?:/[\w.-]+)*)", text))
    in_makefile |= {f"{artifacts.BENCH}/{name}" for name in re.findall(r"\$\(BENCH_DIR\)/([\w.-]+)", text)}
    in_makefile |= set(re.search(r"addprefix \$\(ARTIFACTS\)/,([^)]*)\)", text).group(1).split())
    in_makefile -= {".flags", "deploy/manifest.json"}  # the stamps' folder; the bundle's own manifest
    assert in_makefile and in_makefile <= named, in_makefile - named


def test_make_train_export_builds_once_and_rebuilds_on_change(mnist, data_dir, cli_env, tmp_path):
    make = ["make", "-C", str(REPO), f"PY={sys.executable}", f"ARTIFACTS={tmp_path}", f"DATA_DIR={data_dir}",
            "DEVICE=cpu", "EPOCHS=1", "TUNE_SECONDS=0.002", "TUNE_BATCH_SIZES=1"]  # tuning: the mechanism only

    def run(*args):
        return subprocess.run([*make, *args], capture_output=True, text=True, env=cli_env, check=False)

    first = run("train", "export", "deploy")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "deploy" / "manifest.json").is_file() and "-m deploy.build" in first.stdout
    assert "epoch 1/1" in first.stdout and "# Parity: PASSED" in first.stdout
    assert "-m export.variants" in first.stdout and "-m export.tune" in first.stdout
    assert " int8: model.int8.onnx: accuracy" in first.stdout and (tmp_path / "ort_tuning.json").is_file()
    assert len([line for line in first.stdout.splitlines() if line.startswith("precision: ")]) == 1

    model, payload = load_checkpoint(tmp_path / "model.pt")  # torch.load(weights_only=True) inside
    metrics = json.loads((tmp_path / "train_metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "train_seconds", "warmup_seconds", "epochs", "recipe", "device",
                "precision", "seed"):
        assert key in metrics
    assert metrics["precision"]["dtype"] in ("float32", "bfloat16") and metrics["precision"]["reason"]
    assert (metrics["epochs"], metrics["recipe"], payload["config"]["recipe"]["name"]) == (1, "fast", "fast")
    _, test_accuracy = evaluate(model, mnist.held_out)  # saved weights take raw [0, 1] images
    assert test_accuracy == metrics["test_accuracy"] >= 0.90

    assert run("-q", "train", "export", "deploy").returncode == 0  # nothing to do

    # Each stage depends on the sources its programs import (-W: "as if this file were new").
    dry = run("-n", "-W", "deploy/server.py", "deploy").stdout.splitlines()
    assert [line for line in dry if " -m " in line] == [next(line for line in dry if "-m deploy.build" in line)]
    for source in ("pipeline/handoff/ort_options.py", "pipeline/datasets/otto_synthetic.py", "bench/report.py"):
        assert run("-q", "-W", source, "train").returncode == 0, f"{source} retrains the model"
    assert run("-q", "-W", "pipeline/handoff/ort_options.py", "tune").returncode == 1
    assert run("-q", "train", "DEVICE=auto").returncode == 0  # where the model trains, not which model

    os.utime(tmp_path / "model.pt")  # model.pt changed (now newer than the exports): export again, do not retrain
    again = run("export")
    assert again.returncode == 0, again.stderr
    assert "-m export --artifacts" in again.stdout and "epoch 1/1" not in again.stdout

    assert run("-q", "deploy", "VARIANT=int8").returncode == 1  # another variant: a new bundle
    assert run("-q", "tune", "TUNE_SECONDS=0.003").returncode == 1  # new tuning flags: tune again
    assert run("-q", "export", "PER_CHANNEL=on").returncode == 1  # new int8 flags: the variants again
    assert run("-q", "train", "EPOCHS=2").returncode == 1  # a new flag means a new model
    assert run("-q", "train", "PRECISION=off").returncode == 1
