"""MNIST as verified, decoded tensors.

Files live in torchvision's layout, `<data_dir>/MNIST/raw/<name>-ubyte`, so torchvision's own
`datasets.MNIST(root=data_dir)` reads the same copy. Where they come from, in order:
  1. already under `<data_dir>` (verified again on every load);
  2. a local mirror folder (`MNIST_MIRROR`) holding the four `.gz` IDX files;
  3. torchvision's download, for machines with internet.
Every file is checked (IDX magic, header shape, length, sha256 of the decompressed bytes) and a
problem is a one-line `PipelineError` naming the file and what was expected.

Images are decoded once to float32 in [0, 1] (exactly torchvision's ToTensor scaling) with shape
N x 1 x 28 x 28; batches are built by indexing those tensors, not by per-sample transforms.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from pipeline.atomic import atomic_path
from pipeline.errors import PipelineError

IMAGES_MAGIC = 0x00000803  # IDX: unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # IDX: unsigned bytes, 1 dimension


@dataclass(frozen=True)
class IdxFile:
    """One decompressed IDX file and what it must contain."""

    name: str
    magic: int
    shape: tuple[int, ...]
    sha256: str

    @property
    def header_bytes(self) -> int:
        return 4 + 4 * len(self.shape)

    @property
    def size(self) -> int:
        return self.header_bytes + math.prod(self.shape)


# sha256 of the decompressed files, as published with the offline copy (shared/data/mnist/README.md).
MNIST_FILES = {
    "train_images": IdxFile(
        "train-images-idx3-ubyte", IMAGES_MAGIC, (60000, 28, 28),
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    "train_labels": IdxFile(
        "train-labels-idx1-ubyte", LABELS_MAGIC, (60000,),
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    "test_images": IdxFile(
        "t10k-images-idx3-ubyte", IMAGES_MAGIC, (10000, 28, 28),
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    "test_labels": IdxFile(
        "t10k-labels-idx1-ubyte", LABELS_MAGIC, (10000,),
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
}
CLASSES = tuple(str(digit) for digit in range(10))


class Split(TensorDataset):
    """(images, labels) of one split; a `Dataset`, so `DataLoader(split, ...)` works as in the lecture.

    images: float32, N x 1 x 28 x 28, values in [0, 1]; labels: int64, N.
    """

    @property
    def images(self) -> torch.Tensor:
        return self.tensors[0]

    @property
    def labels(self) -> torch.Tensor:
        return self.tensors[1]

    def to(self, device: torch.device, image_dtype: torch.dtype | None = None) -> Split:
        return Split(self.images.to(device, image_dtype), self.labels.to(device))

    def first(self, count: int | None) -> Split:
        """The first `count` samples (views), or the whole split when `count` is None."""
        return self if count is None else Split(self.images[:count], self.labels[:count])


@dataclass(frozen=True)
class MNIST:
    train: Split
    test: Split
    name: str = "mnist"
    classes: tuple[str, ...] = CLASSES
    input_shape: tuple[int, ...] = (1, 28, 28)  # one sample, as ToTensor gives it


def raw_dir(data_dir: Path) -> Path:
    """torchvision's folder for the decompressed files."""
    return Path(data_dir) / "MNIST" / "raw"


def load_mnist(data_dir: Path, mirror: Path | None = None) -> MNIST:
    """Fetch (if needed), verify and decode the four MNIST files."""
    fetch_mnist(data_dir, mirror)
    arrays = {key: read_idx(raw_dir(data_dir) / spec.name, spec) for key, spec in MNIST_FILES.items()}
    return MNIST(
        train=_split(arrays["train_images"], arrays["train_labels"]),
        test=_split(arrays["test_images"], arrays["test_labels"]),
    )


def load_mnist_for(artifacts: str, data_dir: str | None, mirror: str | None) -> MNIST:
    """`load_mnist` with the CLI defaults: data under `<artifacts>/data` unless `data_dir` is given."""
    return load_mnist(Path(data_dir or Path(artifacts) / "data"), Path(mirror) if mirror else None)


def fetch_mnist(data_dir: Path, mirror: Path | None = None) -> None:
    """Make sure every file is under `<data_dir>/MNIST/raw`, taking it from the mirror or the web."""
    missing = [spec for spec in MNIST_FILES.values() if not (raw_dir(data_dir) / spec.name).exists()]
    if not missing:
        return
    if mirror is not None:
        for spec in missing:
            _copy_from_mirror(Path(mirror), spec, raw_dir(data_dir) / spec.name)
    else:
        _download(data_dir)


def read_idx(path: Path, spec: IdxFile) -> np.ndarray:
    """Read and verify one decompressed IDX file; return its payload with shape `spec.shape`."""
    try:
        data = path.read_bytes()
    except OSError as err:
        raise PipelineError(f"{path}: cannot read ({err.strerror})") from err
    _check_idx(path, data, spec)
    return np.frombuffer(data, dtype=np.uint8, offset=spec.header_bytes).reshape(spec.shape)


def _check_idx(path: Path, data: bytes, spec: IdxFile) -> None:
    if len(data) < spec.header_bytes:
        raise PipelineError(f"{path}: truncated: {len(data)} bytes, expected {spec.size}")
    magic = int.from_bytes(data[:4], "big")
    if magic != spec.magic:
        raise PipelineError(f"{path}: wrong IDX magic number 0x{magic:08x}, expected 0x{spec.magic:08x}")
    header = data[4 : spec.header_bytes]
    shape = tuple(int.from_bytes(header[i : i + 4], "big") for i in range(0, len(header), 4))
    if shape != spec.shape:
        raise PipelineError(f"{path}: IDX header says shape {shape}, expected {spec.shape}")
    if len(data) != spec.size:
        state = "truncated" if len(data) < spec.size else "too long"
        raise PipelineError(f"{path}: {state}: {len(data)} bytes, expected {spec.size}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise PipelineError(f"{path}: sha256 {digest} does not match the expected {spec.sha256}")


def _copy_from_mirror(mirror: Path, spec: IdxFile, dest: Path) -> None:
    """Decompress `<mirror>/<name>.gz` to `dest`, verifying before it takes its final name."""
    source = mirror / f"{spec.name}.gz"
    if not source.is_file():
        raise PipelineError(f"{source}: not found; MNIST_MIRROR must hold the four MNIST .gz IDX files")
    try:
        data = gzip.decompress(source.read_bytes())
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise PipelineError(f"{source}: not a complete gzip file ({err})") from err
    _check_idx(source, data, spec)
    with atomic_path(dest) as tmp:
        tmp.write_bytes(data)


def _download(data_dir: Path) -> None:
    """torchvision's downloader (it checks the .gz md5s); our own checks run on the result."""
    from torchvision.datasets import MNIST as TorchvisionMNIST

    try:
        TorchvisionMNIST(root=str(data_dir), train=True, download=True)
    except (OSError, RuntimeError) as err:  # URLError is an OSError; torchvision wraps in RuntimeError
        lines = [line for line in str(err).splitlines() if line.strip()]
        reason = lines[-1] if lines else type(err).__name__  # torchvision ends with the last mirror's error
        raise PipelineError(
            f"could not download MNIST into {raw_dir(data_dir)} ({reason}); "
            "without internet set MNIST_MIRROR to a folder holding the four .gz IDX files"
        ) from err


def _split(images: np.ndarray, labels: np.ndarray) -> Split:
    # ToTensor's scaling exactly: uint8 -> float32, divided by 255.
    pixels = torch.from_numpy(images.copy()).unsqueeze(1).to(torch.float32).div_(255)
    return Split(pixels, torch.from_numpy(labels.astype(np.int64)))


def shuffled_batches(
    split: Split, batch_size: int, generator: torch.Generator
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of shuffled minibatches made by indexing the split's tensors.

    The order is drawn on the CPU from `generator`, so it is the same whichever device holds the
    data. The last batch may be smaller (as with DataLoader's default drop_last=False).
    """
    order = torch.randperm(len(split), generator=generator).to(split.images.device)
    for index in order.split(batch_size):
        yield split.images[index], split.labels[index]


def ordered_batches(split: Split, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The split in its stored order, as views (no copies): for evaluation."""
    yield from zip(split.images.split(batch_size), split.labels.split(batch_size))
