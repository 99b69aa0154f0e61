"""Files the predictor reads, decoded into the model's float32 inputs (torch-free).

The bundle's contract names the format (`input_format`, stamped on model.onnx at export):
  grayscale-image (MNIST): image files (PNG, JPEG, ...) or folders of them, converted to
      grayscale and resized to the model's H x W; `.npy` arrays of N x H x W or N x 1 x H x W
      (uint8 0-255 or float 0-1); IDX files (plain or gzipped, e.g. MNIST's own t10k-images).
      Pixels are scaled to [0, 1] exactly as torchvision's ToTensor does (uint8 / 255).
  otto-csv (Otto): CSV files with the training columns feat_1..feat_93 (`id` optional, `target`
      ignored if present), read by the same reader training uses.
Every problem is a `DeployError` whose exit code says which kind it is (deploy.errors.ExitCode).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from deploy.errors import DeployError, ExitCode
from handoff.contract import Contract, InputFormat
from handoff.errors import PipelineError
from handoff.idx import GZIP_MAGIC, is_idx, read_any_idx
from handoff.otto_csv import read_otto_csv

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")  # read from folders
NPY_MAGIC = b"\x93NUMPY"


@dataclass(frozen=True)
class Source:
    """Where one input row came from: a file, and its row in that file when it holds several."""

    file: str
    index: int | None = None
    id: str | None = None  # Otto's id column, when the CSV has one

    def label(self) -> str:
        if self.id is not None:
            return f"{self.file} (id {self.id})"
        return self.file if self.index is None else f"{self.file}[{self.index}]"


@dataclass(frozen=True)
class Inputs:
    sources: list[Source]
    array: np.ndarray  # float32, N x contract.input_shape


def read_inputs(paths: list[str], contract: Contract, invert: bool = False) -> Inputs:
    """Decode every path (files or folders) with the reader for the bundle's input format."""
    reader = READERS.get(contract.input_format)
    if reader is None:
        raise DeployError(f"this predictor has no reader for input format {contract.input_format!r}", ExitCode.BAD_MODEL)
    sources, arrays = [], []
    for path in map(Path, paths):
        if not path.exists():
            raise DeployError(f"{path}: no such file or folder", ExitCode.MISSING_INPUT)
        for found, array in reader(path, contract, invert):
            sources += found
            arrays.append(array)
    return Inputs(sources, np.concatenate(arrays))  # Bundle.predict checks it against the contract


# --- grayscale images -----------------------------------------------------------------------


def _grayscale(path: Path, contract: Contract, invert: bool):
    """Yield (sources, float32 N x 1 x H x W) per file; a folder yields its images in name order."""
    files = _folder_images(path) if path.is_dir() else [path]
    for file in files:
        pixels, sources = _decode(file, contract)
        scaled = _to_unit_range(pixels, file).reshape(len(pixels), *contract.input_shape)
        yield sources, (1.0 - scaled) if invert else scaled


def _folder_images(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DeployError(f"{folder}: holds no image files ({', '.join(IMAGE_SUFFIXES)})", ExitCode.MISSING_INPUT)
    return files


def _decode(file: Path, contract: Contract) -> tuple[np.ndarray, list[Source]]:
    """An image, .npy or IDX file -> (pixels N x H x W, one Source per image), sniffed by content."""
    try:
        with open(file, "rb") as f:
            head = f.read(len(NPY_MAGIC))
    except OSError as err:
        raise DeployError(f"{file}: cannot read ({err.strerror})", ExitCode.MISSING_INPUT) from err
    height, width = contract.input_shape[-2:]
    if head.startswith(NPY_MAGIC) or is_idx(head) or head.startswith(GZIP_MAGIC):
        stack = _load_npy(file) if head.startswith(NPY_MAGIC) else _load_idx(file)
        if stack.ndim == 4 and stack.shape[1] == 1:
            stack = stack[:, 0]
        if stack.ndim != 3 or stack.shape[1:] != (height, width) or not len(stack):
            raise DeployError(f"{file}: array of shape {list(stack.shape)}; expected N x {height} x {width} "
                              f"or N x 1 x {height} x {width}", ExitCode.BAD_SHAPE)
        return stack, [Source(str(file), i) for i in range(len(stack))]
    return _load_image(file, width, height)[None], [Source(str(file))]


def _load_image(file: Path, width: int, height: int) -> np.ndarray:
    """Grayscale ("L": ITU-R 601-2 luma), resized with Lanczos when it is not width x height."""
    try:
        with Image.open(file) as image:
            gray = image.convert("L")
    except (UnidentifiedImageError, OSError) as err:
        raise DeployError(f"{file}: not an image, .npy or IDX file ({type(err).__name__})", ExitCode.NOT_READABLE) from err
    if gray.size != (width, height):
        gray = gray.resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(gray, dtype=np.uint8)


def _load_npy(file: Path) -> np.ndarray:
    try:
        return np.load(file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:  # pickled object arrays, truncated files
        raise DeployError(f"{file}: unreadable .npy file ({err})", ExitCode.NOT_READABLE) from err


def _load_idx(file: Path) -> np.ndarray:
    try:
        return read_any_idx(file)
    except PipelineError as err:
        raise DeployError(str(err), ExitCode.NOT_READABLE) from err


def _to_unit_range(pixels: np.ndarray, file: Path) -> np.ndarray:
    """uint8 0-255 -> /255 (ToTensor's scaling); floats are taken as already in [0, 1]."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / np.float32(255)
    if np.issubdtype(pixels.dtype, np.floating):
        scaled = pixels.astype(np.float32)
        if not np.isfinite(scaled).all():
            raise DeployError(f"{file}: holds NaN or infinity", ExitCode.BAD_VALUES)
        if scaled.min() < 0 or scaled.max() > 1:
            raise DeployError(f"{file}: float pixels span [{scaled.min():g}, {scaled.max():g}]; expected 0-1 "
                              "(or uint8 0-255)", ExitCode.BAD_VALUES)
        return scaled
    raise DeployError(f"{file}: dtype {pixels.dtype}; expected uint8 (0-255) or float (0-1)", ExitCode.BAD_SHAPE)


# --- Otto CSV -------------------------------------------------------------------------------


def _otto_csv(path: Path, contract: Contract, invert: bool):
    if path.is_dir():
        raise DeployError(f"{path}: a folder; pass the CSV files themselves", ExitCode.MISSING_INPUT)
    try:
        table = read_otto_csv(path, require_target=False)
    except PipelineError as err:
        raise DeployError(str(err), ExitCode.BAD_CSV) from err
    ids = table.ids if table.ids is not None else [None] * len(table.features)
    yield [Source(str(path), i, None if row_id is None else str(row_id)) for i, row_id in enumerate(ids)], table.features


READERS: dict[str, Callable] = {InputFormat.GRAYSCALE_IMAGE: _grayscale, InputFormat.OTTO_CSV: _otto_csv}
