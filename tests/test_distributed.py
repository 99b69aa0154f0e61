"""Data-parallel training with torchrun on the CPU (gloo), on real MNIST: the shards, the
semantics (the same steps as one process), one copy of every output, kill-and-resume, a failing
rank stopping the others, and the multi-node command Make builds (which cannot run here)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from test_faults import SMALL_SAMPLES, Pause, finish, small_run_args

from conftest import REPO
from handoff.errors import PipelineError
from handoff.lock import exclusive_lock
from pipeline import resume
from pipeline.batches import shuffled_batches
from pipeline.checkpoint import load_checkpoint
from pipeline.config import RECIPES, TrainConfig
from pipeline.distributed import World, shard_batches
from pipeline.placement import rank_device
from pipeline.train import train

FAST_BATCH = RECIPES["mnist"]["fast"].batch_size  # split evenly over the two ranks


def torchrun(*args: str, env: dict, nproc: int = 2) -> subprocess.Popen:
    """`torchrun --standalone`, its output captured."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
               "-m", "pipeline.train", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            cwd=REPO)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc): torchrun starts each rank in a session of its own."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue  # exited meanwhile
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def test_shards_are_disjoint_and_together_the_epoch(mnist):
    split = mnist.train.first(1000)  # 15 batches of 64 and one of 40
    for size in (2, 3):
        single = list(shuffled_batches(split, 64, torch.Generator().manual_seed(7)))
        per_rank = [list(shard_batches(World(rank, rank, size, size))(split, 64, torch.Generator().manual_seed(7)))
                    for rank in range(size)]
        assert all(len(batches) == len(single) for batches in per_rank)  # the same number of steps on every rank
        for step, (images, labels) in enumerate(single):
            joined = torch.cat([per_rank[rank][step][1] for rank in range(size)])
            assert torch.equal(joined, labels)  # the ranks' slices, in rank order, are the global batch
            assert max(len(per_rank[r][step][1]) for r in range(size)) - min(len(per_rank[r][step][1]) for r in range(size)) <= 1


def test_two_processes_train_the_single_process_model(mnist, data_dir, cli_env, tmp_path):
    args = ["--epochs", "1", "--train-samples", str(SMALL_SAMPLES), "--device", "cpu", "--precision", "off",
            "--artifacts", str(tmp_path), "--data-dir", str(data_dir)]
    code, stdout, stderr = finish(torchrun(*args, env=cli_env))
    assert code == 0, stderr[-3000:]
    assert stdout.count("epoch 1/1 ") == 1 and "2 processes (gloo)" in stdout  # rank 0 speaks, once
    metrics = json.loads((tmp_path / "train_metrics.json").read_text())
    assert (metrics["world_size"], metrics["backend"], metrics["global_batch"], metrics["per_rank_batch"]) == (2, "gloo", FAST_BATCH, FAST_BATCH // 2)
    assert metrics["samples_trained"] == SMALL_SAMPLES  # the ranks' shards add up to the epoch
    two, _ = load_checkpoint(tmp_path / "model.pt")
    one = train(TrainConfig(epochs=1, train_samples=SMALL_SAMPLES, device="cpu", precision="off"), mnist).model
    for name, tensor in one.state_dict().items():  # the same steps, up to the order of float sums
        torch.testing.assert_close(two.state_dict()[name], tensor, atol=1e-4, rtol=1e-3)
    assert not (tmp_path / "checkpoints").exists()


RESUME_EPOCHS = 2  # of SMALL_SAMPLES rows; rank 0 pauses after the first (tests/pause_after_checkpoint)


def resume_run_args(artifacts, data_dir) -> list[str]:
    return ["--epochs", str(RESUME_EPOCHS), "--train-samples", str(SMALL_SAMPLES), "--device", "cpu",
            "--artifacts", str(artifacts), "--data-dir", str(data_dir)]


@pytest.mark.slow  # 50 s; the single-process kill-and-resume (tests/test_faults.py) stays in make test
def test_killed_two_process_run_resumes_with_the_same_command(data_dir, cli_env, tmp_path):
    args = resume_run_args(tmp_path / "killed", data_dir)
    pause = Pause(tmp_path / "pause")
    first = torchrun(*args, env=pause.env(cli_env))
    pause.wait(first)  # rank 0 wrote epoch 1's checkpoint; rank 1 waits for it in the next step
    for pid in [first.pid, *descendants(first.pid)]:  # the launcher and both ranks (each in its own session)
        os.kill(pid, signal.SIGKILL)
    first.communicate()
    assert not (tmp_path / "killed" / "model.pt").exists()
    last_done = int(resume.checkpoints(tmp_path / "killed" / "checkpoints")[-1].stem.split("-")[1])
    assert last_done == 1

    code, stdout, stderr = finish(torchrun(*args, env=cli_env))
    assert code == 0, stderr[-3000:]
    assert stdout.count(f"resuming after epoch {last_done}/{RESUME_EPOCHS} from") == 1
    code, _, stderr = finish(torchrun(*resume_run_args(tmp_path / "whole", data_dir), env=cli_env))
    assert code == 0, stderr[-3000:]
    resumed, _ = load_checkpoint(tmp_path / "killed" / "model.pt")
    whole, _ = load_checkpoint(tmp_path / "whole" / "model.pt")
    for name, tensor in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], tensor, atol=1e-5, rtol=1e-4)


def test_a_failing_rank_stops_the_others_with_its_error_and_no_model(data_dir, cli_env, tmp_path):
    with exclusive_lock(tmp_path / ".train.lock", "test"):  # rank 0 cannot take the lock; rank 1 waits for it
        code, _, stderr = finish(torchrun(*small_run_args(tmp_path, data_dir), env=cli_env))
    assert code != 0
    assert "another training run is using this folder" in stderr  # rank 0's one-line error
    assert not (tmp_path / "model.pt").exists()


def test_make_builds_the_torchrun_commands(tmp_path):
    def dry_run(*args: str) -> str:
        make = ["make", "-C", str(REPO), "-n", f"ARTIFACTS={tmp_path}", "train", *args]
        return subprocess.run(make, capture_output=True, text=True, check=True).stdout

    assert "torch.distributed.run" not in dry_run()
    assert "-m torch.distributed.run --standalone --nproc-per-node 2 -m pipeline.train" in dry_run("NPROC=2")
    multi = dry_run("NPROC=4", "NNODES=2", "RDZV_ENDPOINT=node0:29500")
    assert ("-m torch.distributed.run --nnodes 2 --rdzv-backend c10d --rdzv-endpoint node0:29500 --rdzv-id mlp-train "
            "--nproc-per-node 4 -m pipeline.train") in multi


def test_cuda_with_fewer_gpus_than_ranks_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # this machine has none: the check, not a GPU
    with pytest.raises(PipelineError, match=r"DEVICE=cuda with 2 processes on this node, but only 1 GPUs are visible"):
        rank_device(torch.device("cuda"), World(rank=1, local_rank=1, local_size=2, size=2))
    assert rank_device(torch.device("cpu"), World(rank=1, local_rank=1, local_size=2, size=2)) == torch.device("cpu")
