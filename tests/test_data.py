"""Real MNIST: decoding, verification and the one-line errors for bad files."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys

import pytest
import torch
from torch.utils.data import DataLoader

from handoff.errors import PipelineError
from pipeline.batches import shuffled_batches
from pipeline.datasets import mnist as mnist_data
from pipeline.datasets.mnist import MNIST_FILES, fetch_mnist, load_mnist, raw_dir

TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_LABEL_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_real_mnist_shapes_and_label_counts(mnist):
    assert mnist.train.inputs.shape == (60000, 1, 28, 28)
    assert mnist.held_out.inputs.shape == (10000, 1, 28, 28)
    assert mnist.train.inputs.dtype == torch.float32
    assert mnist.train.labels.bincount().tolist() == TRAIN_LABEL_COUNTS
    assert mnist.held_out.labels.bincount().tolist() == TEST_LABEL_COUNTS


def test_images_are_exactly_torchvision_totensor(mnist, data_dir):
    from torchvision import datasets, transforms

    reference = datasets.MNIST(root=str(data_dir), train=False, transform=transforms.ToTensor())
    for index in (0, 1234, 9999):
        image, label = reference[index]
        assert torch.equal(mnist.held_out.inputs[index], image)
        assert mnist.held_out.labels[index].item() == label


def test_split_works_with_dataloader(mnist):
    loader = DataLoader(mnist.held_out, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0))
    images, labels = next(iter(loader))
    assert images.shape == (64, 1, 28, 28) and labels.shape == (64,)


def test_shuffled_batches_cover_every_sample_once_in_a_seeded_order(mnist):
    def order(seed):
        batches = shuffled_batches(mnist.held_out, 1000, torch.Generator().manual_seed(seed))
        return torch.cat([labels for _, labels in batches])

    first, again, other = order(0), order(0), order(1)
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    assert first.bincount().tolist() == TEST_LABEL_COUNTS


def test_a_minibatch_is_the_rows_advanced_indexing_gives(mnist):
    """Split.rows (index_select, the fast gather) against `inputs[index]` (the oracle), on CPU and
    with an index that repeats and runs backwards."""
    index = torch.tensor([5, 0, 9_999, 5, 17])
    images, labels = mnist.held_out.rows(index)
    assert torch.equal(images, mnist.held_out.inputs[index]) and torch.equal(labels, mnist.held_out.labels[index])
    assert images.is_contiguous() and images.shape == (5, 1, 28, 28)


def _copy_verified(data_dir, tmp_path):
    dest = raw_dir(tmp_path)
    shutil.copytree(raw_dir(data_dir), dest)
    return dest / MNIST_FILES["test_labels"].name


def test_checksum_mismatch_is_refused(data_dir, tmp_path):
    path = _copy_verified(data_dir, tmp_path)
    payload = bytearray(path.read_bytes())
    payload[-1] = (payload[-1] + 1) % 10  # a different, still valid, label
    path.write_bytes(payload)
    with pytest.raises(PipelineError, match=rf"{path}: sha256 [0-9a-f]{{64}} does not match the expected ff7bcfd4"):
        load_mnist(tmp_path)


def test_truncated_file_is_refused(data_dir, tmp_path):
    path = _copy_verified(data_dir, tmp_path)
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(PipelineError, match=rf"{path}: truncated: 5000 bytes, expected 10008"):
        load_mnist(tmp_path)


def test_wrong_magic_number_is_refused(data_dir, tmp_path):
    path = _copy_verified(data_dir, tmp_path)
    payload = bytearray(path.read_bytes())
    payload[3] = 0x03  # images' magic in a labels file
    path.write_bytes(payload)
    with pytest.raises(PipelineError, match=rf"{path}: wrong IDX magic number 0x00000803, expected 0x00000801"):
        load_mnist(tmp_path)


def test_truncated_gzip_in_mirror_is_refused(mnist_mirror, tmp_path):
    if mnist_mirror is None:
        pytest.skip("no local MNIST mirror to copy from")
    mirror = tmp_path / "mirror"
    shutil.copytree(mnist_mirror, mirror)
    broken = mirror / "t10k-images-idx3-ubyte.gz"
    broken.chmod(0o644)
    broken.write_bytes(broken.read_bytes()[:100_000])
    with pytest.raises(PipelineError, match=rf"{broken}: not a complete gzip file"):
        fetch_mnist(tmp_path / "data", mirror)
    assert not (raw_dir(tmp_path / "data") / "t10k-images-idx3-ubyte").exists()


def test_corrupt_file_in_mirror_never_takes_its_final_name(mnist_mirror, tmp_path):
    if mnist_mirror is None:
        pytest.skip("no local MNIST mirror to copy from")
    mirror = tmp_path / "mirror"
    shutil.copytree(mnist_mirror, mirror)
    labels = mirror / "t10k-labels-idx1-ubyte.gz"
    labels.chmod(0o644)
    payload = bytearray(gzip.decompress(labels.read_bytes()))
    payload[100] = (payload[100] + 1) % 10
    labels.write_bytes(gzip.compress(bytes(payload)))
    with pytest.raises(PipelineError, match="sha256 .* does not match"):
        fetch_mnist(tmp_path / "data", mirror)
    assert not (raw_dir(tmp_path / "data") / "t10k-labels-idx1-ubyte").exists()


def test_no_network_and_no_mirror_says_to_set_mnist_mirror(tmp_path, monkeypatch):
    from torchvision.datasets import MNIST as TorchvisionMNIST

    # Port 9 (discard) on loopback refuses at once: the download fails as it does offline.
    monkeypatch.setattr(TorchvisionMNIST, "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(PipelineError, match="could not download MNIST .*set MNIST_MIRROR"):
        fetch_mnist(tmp_path, mirror=None)


def test_cli_reports_a_bad_file_in_one_line_and_exits_nonzero(data_dir, tmp_path, cli_env):
    path = _copy_verified(data_dir, tmp_path / "data")
    path.write_bytes(path.read_bytes()[:5000])
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.train", "--artifacts", str(tmp_path), "--device", "cpu"],
        capture_output=True, text=True, env=cli_env, check=False,
    )
    assert run.returncode == 2
    assert run.stderr == f"error: {path}: truncated: 5000 bytes, expected 10008\n"
    assert not (tmp_path / "model.pt").exists()


def test_idx_spec_sizes_match_the_real_files(data_dir):
    for spec in MNIST_FILES.values():
        assert (raw_dir(data_dir) / spec.name).stat().st_size == spec.size
    assert mnist_data.MNIST_FILES["train_images"].size == 47_040_016
