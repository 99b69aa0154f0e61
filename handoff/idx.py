"""IDX files (LeCun's MNIST format) decoded to numpy, torch-free.

An IDX file is a 4-byte magic number (0x00 0x00, a type code, the number of dimensions), one
big-endian uint32 per dimension, then the payload in C order. Unsigned bytes (type 0x08) are
what MNIST and its look-alikes use; big-endian float32 (type 0x0D) is how the parity gate hands its
reference probabilities to readers without numpy (the C++ loader): `float_idx_bytes`. Training checks each of MNIST's four files
against its known shape and sha256 (`read_idx`); a deployed predictor reads whatever IDX file a
user passes (`read_any_idx`), gzipped or not. Every problem is a one-line `PipelineError`.

This module imports only the standard library and numpy: the torch-free predictor uses it.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handoff.errors import PipelineError

UBYTE = 0x08  # IDX type code for unsigned bytes
FLOAT32 = 0x0D  # IDX type code for big-endian IEEE float32
IMAGES_MAGIC = 0x00000803  # IDX: unsigned bytes, 3 dimensions
LABELS_MAGIC = 0x00000801  # IDX: unsigned bytes, 1 dimension
GZIP_MAGIC = b"\x1f\x8b"


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


def read_idx(path: Path, spec: IdxFile) -> np.ndarray:
    """Read and verify one decompressed IDX file; return its payload with shape `spec.shape`."""
    data = _read_bytes(path)
    check_idx(path, data, spec)
    return np.frombuffer(data, dtype=np.uint8, offset=spec.header_bytes).reshape(spec.shape)


def check_idx(path: Path, data: bytes, spec: IdxFile) -> None:
    """Magic, header shape, length and sha256 of `data` (the decompressed bytes of `path`)."""
    if len(data) < spec.header_bytes:
        raise PipelineError(f"{path}: truncated: {len(data)} bytes, expected {spec.size}")
    magic = int.from_bytes(data[:4], "big")
    if magic != spec.magic:
        raise PipelineError(f"{path}: wrong IDX magic number 0x{magic:08x}, expected 0x{spec.magic:08x}")
    shape = _header_shape(data, len(spec.shape))
    if shape != spec.shape:
        raise PipelineError(f"{path}: IDX header says shape {shape}, expected {spec.shape}")
    if len(data) != spec.size:
        state = "truncated" if len(data) < spec.size else "too long"
        raise PipelineError(f"{path}: {state}: {len(data)} bytes, expected {spec.size}")
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise PipelineError(f"{path}: sha256 {digest} does not match the expected {spec.sha256}")


def is_idx(head: bytes) -> bool:
    """Whether the first bytes of a file look like an (uncompressed) unsigned-byte IDX file."""
    return len(head) >= 4 and head[:2] == b"\x00\x00" and head[2] == UBYTE and 1 <= head[3] <= 4


def read_any_idx(path: Path) -> np.ndarray:
    """Any unsigned-byte IDX file, plain or gzipped, as a uint8 array of the shape its header gives."""
    data = _read_bytes(path)
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError
            raise PipelineError(f"{path}: not a complete gzip file ({err})") from err
    if not is_idx(data[:4]):
        raise PipelineError(f"{path}: not an unsigned-byte IDX file (magic {data[:4].hex() or 'missing'})")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise PipelineError(f"{path}: truncated IDX header")
    shape = _header_shape(data, ndim)
    expected = 4 + 4 * ndim + math.prod(shape)
    if len(data) != expected:
        state = "truncated" if len(data) < expected else "too long"
        raise PipelineError(f"{path}: {state}: {len(data)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _header_shape(data: bytes, ndim: int) -> tuple[int, ...]:
    return tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))


def _read_bytes(path: Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise PipelineError(f"{path}: cannot read ({err.strerror})") from err


def float_idx_bytes(array: np.ndarray) -> bytes:
    """`array` as a float32 IDX file: header, then big-endian float32 values in C order."""
    header = bytes([0, 0, FLOAT32, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=">f4").tobytes()


def read_float_idx(path: Path) -> np.ndarray:
    """A float32 IDX file (float_idx_bytes) as a native float32 array of the shape its header gives."""
    data = _read_bytes(path)
    if len(data) < 4 or data[:3] != bytes([0, 0, FLOAT32]):
        raise PipelineError(f"{path}: not a float32 IDX file (magic {data[:4].hex() or 'missing'})")
    ndim = data[3]
    shape = _header_shape(data, ndim)
    if len(data) != 4 + 4 * ndim + 4 * math.prod(shape):
        raise PipelineError(f"{path}: {len(data)} bytes, not the float32 IDX file of shape {shape} its header says")
    return np.frombuffer(data, dtype=">f4", offset=4 + 4 * ndim).reshape(shape).astype(np.float32)
