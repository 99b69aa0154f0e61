"""Faults injected at every stage: kills, concurrent runs, bad files, bad config, full disks.

Each bad input must give a one-line error naming the file and what is wrong, a non-zero exit, and
nothing built downstream. docs/RELIABILITY.md lists these tests and what they observed.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import REPO
from handoff.digest import sha256_file
from handoff.errors import PipelineError
from handoff.lock import exclusive_lock
from handoff.manifest import record
from pipeline import checkpoint as checkpoint_module
from pipeline import resume
from pipeline.checkpoint import load_checkpoint
from pipeline.config import TrainConfig
from pipeline.datasets.mnist import MNIST_FILES, load_mnist, raw_dir
from pipeline.model import MLP
from pipeline.train import save, train

# A safety net against hangs, not a speed requirement: every wait below ends on an event.
WAIT_S = 600


def cli(module: str, *args: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", module, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env=env, cwd=REPO, preexec_fn=default_sigint, **kwargs,
    )


def default_sigint() -> None:
    """In the child, before it starts: SIGINT's default action, whatever this process inherited. A
    shell without job control starts its background commands with SIGINT ignored, and Python then
    installs no Ctrl-C handler: the SIGINT test would test nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def finish(process: subprocess.Popen, timeout: float = WAIT_S) -> tuple[int, str, str]:
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


class Pause:
    """The test's end of tests/pause_after_checkpoint: a training process started with `env()`
    pauses right after its first checkpoint; `wait` blocks until it says so, `resume` lets it go on."""

    HOOK = REPO / "tests" / "pause_after_checkpoint"

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("paused", "go"):
            os.mkfifo(folder / name)

    def env(self, env: dict[str, str]) -> dict[str, str]:
        return {**env, "PYTHONPATH": f"{self.HOOK}{os.pathsep}{env['PYTHONPATH']}", "PIPELINE_TEST_PAUSE": str(self.folder)}

    def wait(self, process: subprocess.Popen, timeout: float = WAIT_S) -> Path:
        """The first checkpoint's path, once the process has written it and paused."""
        fd = os.open(self.folder / "paused", os.O_RDWR)  # read-write: no end-of-file before the writer comes
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            assert ready, f"no checkpoint within {timeout} s (exit code {process.poll()})"
            return Path(os.read(fd, 4096).decode().strip())
        finally:
            os.close(fd)

    def resume(self) -> None:
        with open(self.folder / "go", "w"):  # the paused process reads an end-of-file and goes on
            pass


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


# --- interrupted training ---------------------------------------------------------------------
# A small run (SMALL_SAMPLES per epoch, a few epochs): the tests wait on events (a checkpoint file
# appearing, the lock being taken), never on how fast this machine trains.

SMALL_SAMPLES = 12_288  # 24 batches of the fast recipe (512) per epoch
SMALL_EPOCHS = 4


def small_run_args(artifacts, data_dir) -> list[str]:
    return ["--epochs", str(SMALL_EPOCHS), "--train-samples", str(SMALL_SAMPLES), "--device", "cpu",
            "--artifacts", str(artifacts), "--data-dir", str(data_dir)]


def test_sigkill_mid_run_then_resume_gives_identical_weights(mnist, data_dir, cli_env, tmp_path):
    args = small_run_args(tmp_path, data_dir)
    pause = Pause(tmp_path / "pause")
    first = cli("pipeline.train", *args, env=pause.env(cli_env))
    assert pause.wait(first) == tmp_path / "checkpoints" / "epoch-001.pt"
    first.send_signal(signal.SIGKILL)  # paused after epoch 1: epochs 2-4 are still to come
    assert finish(first)[0] == -signal.SIGKILL
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "train_metrics.json").exists()
    last_done = int(resume.checkpoints(tmp_path / "checkpoints")[-1].stem.split("-")[1])
    assert last_done == 1

    code, stdout, stderr = finish(cli("pipeline.train", *args, env=cli_env))
    assert code == 0, stderr
    checkpoint = tmp_path / "checkpoints" / f"epoch-{last_done:03d}.pt"
    assert f"resuming after epoch {last_done}/{SMALL_EPOCHS} from {checkpoint}" in stdout
    resumed, _ = load_checkpoint(tmp_path / "model.pt")
    config = TrainConfig(epochs=SMALL_EPOCHS, train_samples=SMALL_SAMPLES, device="cpu")
    uninterrupted = train(config, mnist).model.state_dict()
    for name, tensor in resumed.state_dict().items():
        assert torch.equal(tensor, uninterrupted[name]), name
    assert not (tmp_path / "checkpoints").exists() and leftovers(tmp_path) == []


# SIGINT in make test-all only: both signals end in the same KeyboardInterrupt path (handoff.cli), and
# the default suite keeps under its 8 minutes.
@pytest.mark.parametrize("sig", [pytest.param(signal.SIGINT, marks=pytest.mark.slow), signal.SIGTERM])
def test_sigint_and_sigterm_stop_cleanly(data_dir, cli_env, tmp_path, sig):
    pause = Pause(tmp_path / "pause")
    process = cli("pipeline.train", *small_run_args(tmp_path, data_dir), env=pause.env(cli_env))
    pause.wait(process)
    process.send_signal(sig)  # it interrupts the wait for `go`, as it would interrupt an epoch
    code, _, stderr = finish(process)
    assert code == 130
    assert last_line(stderr) == "error: interrupted; finished work is kept, re-run the same command to continue"
    assert not (tmp_path / "model.pt").exists()
    assert resume.checkpoints(tmp_path / "checkpoints") and leftovers(tmp_path) == []


def test_checkpoint_from_another_config_is_refused(mnist, tmp_path):
    train(TrainConfig(epochs=1, seed=1, device="cpu", train_samples=4096), mnist, tmp_path / "checkpoints")
    with pytest.raises(PipelineError, match=r"epoch-001.pt: written by a different run \(seed differ\); delete"):
        train(TrainConfig(epochs=1, seed=2, device="cpu", train_samples=4096), mnist, tmp_path / "checkpoints")


def test_second_training_run_on_the_same_artifacts_refuses(data_dir, cli_env, tmp_path):
    args = small_run_args(tmp_path, data_dir)
    pause = Pause(tmp_path / "pause")
    first = cli("pipeline.train", *args, env=pause.env(cli_env))
    lock = tmp_path / ".train.lock"
    pause.wait(first)  # the first run holds its lock, however fast it trains
    try:
        code, _, stderr = finish(cli("pipeline.train", *args, env=cli_env))
    finally:
        pause.resume()
    assert code == 2
    assert last_line(stderr) == (
        f"error: {lock}: held by pid {first.pid}; another training run is using this folder"
    )
    assert finish(first)[0] == 0  # the first run was not disturbed
    load_checkpoint(tmp_path / "model.pt")


def test_lock_is_released_when_its_holder_dies(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from handoff.lock import exclusive_lock\n"
        "with exclusive_lock(__import__('pathlib').Path(sys.argv[2]), 'test'):\n"
        "    print('held', flush=True); time.sleep(60)"), str(REPO), str(tmp_path / ".lock")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(PipelineError, match="held by pid"):
        with exclusive_lock(tmp_path / ".lock", "test"):
            pass
    holder.kill()
    holder.wait()
    with exclusive_lock(tmp_path / ".lock", "test"):
        pass


# --- bad MNIST files ----------------------------------------------------------------------------


def _copy_raw(data_dir, tmp_path):
    shutil.copytree(raw_dir(data_dir), raw_dir(tmp_path))
    return raw_dir(tmp_path) / MNIST_FILES["test_labels"].name


def test_wrong_label_count_is_refused(data_dir, tmp_path):
    path = _copy_raw(data_dir, tmp_path)
    payload = bytearray(path.read_bytes()[:-1])
    payload[4:8] = (9999).to_bytes(4, "big")
    path.write_bytes(payload)
    with pytest.raises(PipelineError, match=rf"^{path}: IDX header says shape \(9999,\), expected \(10000,\)$"):
        load_mnist(tmp_path)


def test_unreadable_file_is_refused(data_dir, cli_env, tmp_path):
    path = _copy_raw(data_dir, tmp_path)
    path.chmod(0)
    if os.geteuid() != 0:
        with pytest.raises(PipelineError, match=rf"^{path}: cannot read \(Permission denied\)$"):
            load_mnist(tmp_path)
        return
    # root reads anything: run the reader as root without the capabilities that bypass permissions
    drop = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-c"]
    if shutil.which("setpriv") is None or subprocess.run([*drop[:2], "true"]).returncode != 0:
        pytest.skip("running as root, and setpriv cannot drop CAP_DAC_OVERRIDE here")
    script = f"from pipeline.datasets.mnist import load_mnist; load_mnist({str(tmp_path)!r})"
    run = subprocess.run([*drop, script], env=cli_env, cwd=REPO, capture_output=True, text=True)
    assert run.returncode != 0
    assert f"PipelineError: {path}: cannot read (Permission denied)" in run.stderr


# --- bad checkpoints ----------------------------------------------------------------------------


@pytest.fixture
def trained(mnist, tmp_path):
    """An artifacts folder with a one-epoch (small) model.pt recorded in its manifest."""
    out = tmp_path / "artifacts"
    config = TrainConfig(epochs=1, device="cpu", artifacts=str(out), train_samples=4096)
    save(config, train(config, mnist), mnist)
    return out


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_would_run_code_is_refused_and_never_runs(trained, cli_env, tmp_path):
    marker = tmp_path / "code-ran"
    torch.save({"format": checkpoint_module.FORMAT, "payload": _RunsCode(marker)}, trained / "model.pt")
    record(trained, ["model.pt"], "test: crafted pickle")  # so only weights_only loading stands in the way
    code, _, stderr = finish(cli("export", "--artifacts", str(trained), env=cli_env))
    assert code == 2
    assert last_line(stderr) == (
        f"error: {trained / 'model.pt'}: refused by weights_only loading (it asks for posix.system); "
        "not a plain-data checkpoint"
    )
    assert not marker.exists() and not (trained / "model.onnx").exists()


@pytest.mark.parametrize("damage", ["truncated", "not_a_checkpoint", "plain_state_dict", "other_architecture"])
def test_bad_checkpoint_is_refused(trained, damage):
    path = trained / "model.pt"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        expected = "not a torch.save archive (truncated, or another kind of file)"
    elif damage == "not_a_checkpoint":
        path.write_text("epoch 1 loss 0.3\n")
        expected = "not a torch.save archive (truncated, or another kind of file)"
    elif damage == "plain_state_dict":
        torch.save(MLP().state_dict(), path)
        expected = "not a mnist-pipeline/model-v1 checkpoint"
    else:
        payload = torch.load(path, weights_only=True)
        payload["state_dict"] = MLP(hidden=(100,)).state_dict()  # another network under the lecture's name
        torch.save(payload, path)
        expected = ("weights do not fit {'in_features': 784, 'hidden': [520, 320, 240, 120], 'num_classes': 10, "
                    "'input_transform': 'none', 'dropout': 0.0}")
    with pytest.raises(PipelineError) as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(f"{path}: {expected}")
    assert "\n" not in str(caught.value)


# --- export and parity inputs ---------------------------------------------------------------------


def test_export_without_a_checkpoint_says_to_train(cli_env, tmp_path):
    code, _, stderr = finish(cli("export", "--artifacts", str(tmp_path), env=cli_env))
    assert code == 2
    assert last_line(stderr) == f"error: {tmp_path / 'model.pt'}: not found; run `make train`"
    assert not (tmp_path / "model.onnx").exists()


def test_changed_checkpoint_is_not_consumed(trained, cli_env):
    with open(trained / "model.pt", "ab") as f:
        f.write(b"\0")
    code, _, stderr = finish(cli("export", "--artifacts", str(trained), env=cli_env))
    assert code == 2
    assert "model.pt: sha256" in last_line(stderr) and "does not match manifest.json" in last_line(stderr)
    assert "written by `python -m pipeline.train`" in last_line(stderr)
    assert not (trained / "model.onnx").exists()


@pytest.mark.parametrize("damage", ["truncated", "not_onnx", "changed_after_export"])
def test_bad_onnx_file_is_refused_by_the_gate(exported, data_dir, cli_env, tmp_path, damage):
    out = tmp_path / "artifacts"
    shutil.copytree(exported, out)
    (out / "parity.json").unlink()
    onnx_path = out / "model.onnx"
    if damage == "truncated":
        onnx_path.write_bytes(onnx_path.read_bytes()[:50_000])
    else:
        onnx_path.write_text("not onnx")
    if damage != "changed_after_export":
        record(out, ["model.onnx"], "test: damaged")  # as if the exporter had written it so
    code, _, stderr = finish(cli("export.parity", "--artifacts", str(out), "--device", "cpu",
                                 "--data-dir", str(data_dir), env=cli_env))
    assert code == 2
    error = last_line(stderr)
    if damage == "changed_after_export":
        assert error.startswith(f"error: {onnx_path}: sha256 ") and "does not match manifest.json" in error
    else:
        assert error.startswith(f"error: {onnx_path}: not a loadable ONNX model (")
    assert not (out / "parity.json").exists()


# --- configuration ---------------------------------------------------------------------------------


def test_non_writable_artifacts_is_refused_before_any_work(cli_env, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    artifacts = blocker / "artifacts"  # a folder inside a regular file cannot be created, even by root
    code, _, stderr = finish(cli("pipeline.train", "--artifacts", str(artifacts), "--device", "cpu", env=cli_env))
    assert code == 2
    assert last_line(stderr) == f"error: {artifacts}: not writable (Not a directory)"


# --- a full disk ----------------------------------------------------------------------------------


def test_disk_full_while_saving_keeps_the_previous_model(trained, mnist, monkeypatch):
    before = sha256_file(trained / "model.pt")
    real_save = torch.save

    def save_then_fail(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as written:  # half the file made it to disk, then the disk filled up
            written.truncate(os.path.getsize(f) // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.torch, "save", save_then_fail)
    config = TrainConfig(epochs=1, seed=5, device="cpu", artifacts=str(trained), train_samples=4096)
    with pytest.raises(PipelineError, match=r"model.pt: cannot write \(No space left on device\); the previous file is kept"):
        save(config, train(config, mnist), mnist)
    assert sha256_file(trained / "model.pt") == before
    assert leftovers(trained) == []


# --- stale artifacts ------------------------------------------------------------------------------


def test_code_or_recipe_change_makes_the_model_stale(data_dir, cli_env, tmp_path, trained):
    make = ["make", "-C", str(REPO), f"PY={sys.executable}", f"ARTIFACTS={tmp_path / 'm'}", f"DATA_DIR={data_dir}",
            "DEVICE=cpu", "EPOCHS=1"]
    shutil.copytree(trained, tmp_path / "m")
    assert subprocess.run([*make, "-q", "train"], env=cli_env).returncode == 1  # no stamp for these flags yet
    (tmp_path / "m" / ".flags").mkdir()  # make -t touches files; it makes no folder
    subprocess.run([*make, "-t", "train"], env=cli_env, check=True)  # as if trained with them: the stamp made, model.pt newer
    assert subprocess.run([*make, "-q", "train"], env=cli_env).returncode == 0
    # -W: "what if this file were new", without touching the checkout
    assert subprocess.run([*make, "-q", "-W", "pipeline/model.py", "train"], env=cli_env).returncode == 1
    assert subprocess.run([*make, "-q", "train", "RECIPE=seed"], env=cli_env).returncode == 1
