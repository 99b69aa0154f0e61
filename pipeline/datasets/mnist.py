"""MNIST: the four IDX files, verified and decoded, and the dataset's contract (`SPEC`).

Files live in torchvision's layout, `<data_dir>/MNIST/raw/<name>-ubyte`, so torchvision's own
`datasets.MNIST(root=data_dir)` reads the same copy. Where they come from, in order:
  1. already under `<data_dir>` (verified again on every load);
  2. a local mirror folder (`MNIST_MIRROR`) holding the four `.gz` IDX files;
  3. torchvision's download, for machines with internet.
Every file is checked (IDX magic, header shape, length, sha256 of the decompressed bytes) and a
problem is a one-line `PipelineError` naming the file and what was expected.

Images are decoded once to float32 in [0, 1] (exactly torchvision's ToTensor scaling) with shape
N x 1 x 28 x 28. The held-out split is the official test set.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from handoff import artifacts
from handoff.atomic import atomic_path
from handoff.contract import InputFormat
from handoff.errors import PipelineError
from handoff.idx import IMAGES_MAGIC, LABELS_MAGIC, IdxFile, check_idx, read_idx
from pipeline.datasets.spec import Dataset, DatasetSpec, DataSource, Split

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


def raw_dir(data_dir: Path) -> Path:
    """torchvision's folder for the decompressed files."""
    return Path(data_dir) / "MNIST" / "raw"


def load_mnist(data_dir: Path, mirror: Path | None = None) -> Dataset:
    """Fetch (if needed), verify and decode the four MNIST files."""
    fetch_mnist(data_dir, mirror)
    arrays = {key: read_idx(raw_dir(data_dir) / spec.name, spec) for key, spec in MNIST_FILES.items()}
    return Dataset(
        SPEC,
        train=_split(arrays["train_images"], arrays["train_labels"]),
        held_out=_split(arrays["test_images"], arrays["test_labels"]),
        info={"source": str(raw_dir(data_dir)), "train_rows": MNIST_FILES["train_labels"].shape[0],
              "held_out_rows": MNIST_FILES["test_labels"].shape[0]},
    )


def load(source: DataSource) -> Dataset:
    """`load_mnist` with the CLI defaults: data under `<artifacts>/data` unless `data_dir` is given."""
    mirror = Path(source.mnist_mirror) if source.mnist_mirror else None
    return load_mnist(Path(source.data_dir or Path(source.artifacts) / artifacts.DATA), mirror)


def random_inputs(count: int, seed: int) -> np.ndarray:
    """`count` seeded uniform [0, 1] images, then one all-zeros and one all-ones image."""
    shape = SPEC.input_shape
    random = torch.rand(count, *shape, generator=torch.Generator().manual_seed(seed))
    return torch.cat([random, torch.zeros(1, *shape), torch.ones(1, *shape)]).numpy()


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


def _copy_from_mirror(mirror: Path, spec: IdxFile, dest: Path) -> None:
    """Decompress `<mirror>/<name>.gz` to `dest`, verifying before it takes its final name."""
    source = mirror / f"{spec.name}.gz"
    if not source.is_file():
        raise PipelineError(f"{source}: not found; MNIST_MIRROR must hold the four MNIST .gz IDX files")
    try:
        data = gzip.decompress(source.read_bytes())
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
        raise PipelineError(f"{source}: not a complete gzip file ({err})") from err
    check_idx(source, data, spec)
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


SPEC = DatasetSpec(
    name="mnist",
    classes=CLASSES,
    input_shape=(1, 28, 28),  # one sample, as ToTensor gives it
    input_name="image",
    input_contract="values in [0, 1] (torchvision ToTensor scale)",
    input_transform="none",
    input_range=(0.0, 1.0),
    input_format=InputFormat.GRAYSCALE_IMAGE,
    per_feature_norm=False,
    held_out="test",
    accuracy_metric="test_accuracy",
    loss_metric="test_loss",
    load=load,
    random_inputs=random_inputs,
)
