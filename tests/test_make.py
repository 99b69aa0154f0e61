"""The Make targets end to end: artifacts written, and rebuilt exactly when their inputs change."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from conftest import REPO
from deploy.bundle import verify_bundle
from handoff import artifacts
from pipeline.checkpoint import load_checkpoint
from pipeline.evaluation import evaluate


def test_make_help_lists_the_verbs_and_reading_the_makefile_writes_nothing(tmp_path):
    run = subprocess.run(["make", "-C", str(REPO), "help", f"ARTIFACTS={tmp_path}"], capture_output=True, text=True, check=True)
    for verb in ("train", "export", "tune", "deploy", "web", "serve", "bench", "bench-study", "test", "setup", "clean"):
        assert f"make {verb} " in run.stdout
    assert "changing only them does not retrain" in run.stdout  # DEVICE, CAPTURE, NPROC: where, not which model
    assert list(tmp_path.iterdir()) == []


def test_the_makefile_names_only_the_artifacts_the_stages_name():
    """Every file a rule makes is one handoff/artifacts.py names (the Makefile cannot import it)."""
    text = (REPO / "Makefile").read_text()
    named = {*(v for k, v in vars(artifacts).items() if k.isupper() and isinstance(v, str)), *artifacts.VARIANT_FILES.values()}
    named |= {f"{artifacts.BUNDLE}/{name}" for name in (artifacts.MANIFEST, artifacts.MODEL_CARD)}
    named.add(f"{artifacts.BUNDLE}/{artifacts.WEB}/{artifacts.WEB_INDEX}")
    folders = {"ARTIFACTS": "", "BENCH_DIR": f"{artifacts.BENCH}/", "BUNDLE": f"{artifacts.BUNDLE}/"}
    in_makefile = {prefix + name for variable, prefix in folders.items()
                   for name in re.findall(rf"\$\({variable}\)/([\w.-]+(?:/[\w.-]+)*)", text)}
    in_makefile |= set(re.search(r"addprefix \$\(ARTIFACTS\)/,([^)]*)\)", text).group(1).split())
    in_makefile = {name for name in in_makefile if name.split("/")[0] != ".flags"}  # the stamps
    assert in_makefile and in_makefile <= named, in_makefile - named


def test_make_help_lists_every_variable_with_its_value():
    run = subprocess.run(["make", "-C", str(REPO), "help", "SEED=7"], capture_output=True, text=True, check=True)
    variables = re.findall(r"^([A-Z_][A-Z0-9_]*) \?=", (REPO / "Makefile").read_text(), flags=re.M)
    variables += re.findall(r"^([A-Z_][A-Z0-9_]*) \?=", (REPO / "bench/serve/peers/peers.mk").read_text(), flags=re.M)
    listed = dict(re.findall(r"^  ([A-Z_][A-Z0-9_]*) +(\S+)", run.stdout, flags=re.M))
    assert set(variables) <= set(listed), set(variables) - set(listed)
    assert (listed["SEED"], listed["ARTIFACTS"], listed["GRPC_PORT"], listed["MAX_BATCH"]) == ("7", "artifacts", "8001", "(empty)")


def test_make_train_export_builds_once_and_rebuilds_on_change(mnist, data_dir, cli_env, tmp_path):
    make = ["make", "-C", str(REPO), f"PY={sys.executable}", f"ARTIFACTS={tmp_path}", f"DATA_DIR={data_dir}",
            "DEVICE=cpu", "EPOCHS=1", "TUNE_SECONDS=0.002", "TUNE_BATCH_SIZES=1", "AUTOTUNE=off"]  # tuning: the mechanism only

    def run(*args):
        return subprocess.run([*make, *args], capture_output=True, text=True, env=cli_env, check=False)

    first = run("train", "export", "deploy")
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "deploy" / "manifest.json").is_file() and "-m deploy.build" in first.stdout
    assert "epoch 1/1" in first.stdout and "# Parity: PASSED" in first.stdout
    assert "-m export.variants" in first.stdout and "-m export.tune" in first.stdout
    assert " int8: model.int8.onnx: accuracy" in first.stdout and (tmp_path / "ort_tuning.json").is_file()
    assert len([line for line in first.stdout.splitlines() if line.startswith("placement: ")]) == 1

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

    # Each stage depends on the sources its programs import (-W: "as if this file were new"): the
    # bundle on its builder's, not on the server's or the predictor's, nor on a bench run.
    dry = run("-n", "-W", "deploy/build/model_card.py", "deploy").stdout.splitlines()
    assert [line for line in dry if " -m " in line] == [next(line for line in dry if "-m deploy.build" in line)]
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "results.json").write_text("{}")  # a bench run after the bundle
    for source in ("deploy/serve/http_app.py", "deploy/predict/inputs.py"):
        assert run("-q", "-W", source, "deploy").returncode == 0, f"{source} rebuilds the bundle"
    # Once `make web` has run here, a rebuilt bundle gets its page rebuilt too (deploy and serve).
    (tmp_path / ".flags" / "web").touch()
    dry = [line for line in run("-n", "deploy", "VARIANT=int8").stdout.splitlines() if " -m " in line]
    assert ["-m deploy.build" in dry[0], "-m web.build" in dry[1]] == [True, True], dry
    (tmp_path / ".flags" / "web").unlink()

    # A refused flag leaves the working bundle whole and current (Make deletes nothing on an error).
    refused = run("deploy", "VARIANT=int9")
    assert refused.returncode == 2 and "unknown variant 'int9'" in refused.stderr
    assert run("-q", "deploy").returncode == 0
    verify_bundle(tmp_path / "deploy")
    for source in ("handoff/ort_options.py", "pipeline/datasets/otto_synthetic.py", "bench/report/__main__.py"):
        assert run("-q", "-W", source, "train").returncode == 0, f"{source} retrains the model"
    assert run("-q", "-W", "handoff/ort_options.py", "tune").returncode == 1
    assert run("-q", "train", "DEVICE=auto").returncode == 0  # where the model trains, not which model

    os.utime(tmp_path / "model.pt")  # model.pt changed (now newer than the exports): export again, do not retrain
    again = [line for line in run("-n", "export").stdout.splitlines() if " -m " in line]
    assert "-m export --artifacts" in again[0] and not any("-m pipeline.train" in line for line in again)

    assert run("-q", "deploy", "VARIANT=int8").returncode == 1  # another variant: a new bundle
    assert run("-q", "tune", "TUNE_SECONDS=0.003").returncode == 1  # new tuning flags: tune again
    assert run("-q", "export", "PER_CHANNEL=on").returncode == 1  # new int8 flags: the variants again
    assert run("-q", "export", "AUTOTUNE=on").returncode == 1  # another compile option: the exports again
    assert run("-q", "train", "EPOCHS=2").returncode == 1  # a new flag means a new model
    assert run("-q", "train", "PRECISION=off").returncode == 1


def test_a_refused_dataset_leaves_no_folder(cli_env):
    """`make train DATASET=mnits`: the one-line error, and no artifacts/mnits/ (its flags are checked first)."""
    run = subprocess.run(["make", "-C", str(REPO), f"PY={sys.executable}", "train", "DATASET=mnits"], capture_output=True,
                         text=True, env=cli_env, check=False)
    assert run.returncode == 2 and "error: unknown DATASET='mnits'; use one of mnist, otto" in run.stderr
    assert not (REPO / "artifacts" / "mnits").exists()
