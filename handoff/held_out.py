"""`held_out.npz`: the labelled held-out rows the parity gate judged the model on (MNIST: the test
set; Otto: the validation split), written by `python -m export.parity` as it loaded them, so the
stages after it that need real rows (the page's evaluation panel, the serving bench) read the very
same ones without the training code or the dataset's files. Torch-free.

    inputs  float32, N x input_shape, the model's raw input (MNIST: [0, 1] pixels; Otto: counts)
    labels  int64, N
    split   the split's name, e.g. "test" or "validation"

`held_out_probs.idx` beside it: what the gate's reference (eager PyTorch, CPU) computed on those rows,
N x classes float32 in IDX (handoff.idx), for a reader without numpy: the C++ loader's agreement.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from handoff.artifacts import HELD_OUT, HELD_OUT_PROBS
from handoff.atomic import atomic_path
from handoff.errors import PipelineError
from handoff.idx import float_idx_bytes
from handoff.manifest import verify


@dataclass(frozen=True)
class HeldOut:
    split: str
    inputs: np.ndarray
    labels: np.ndarray


def write_held_out(folder: Path, held_out: HeldOut) -> None:
    """Write the rows atomically (compressed: MNIST's 10,000 test images take about 2 MB)."""
    with atomic_path(Path(folder) / HELD_OUT) as tmp, open(tmp, "wb") as file:
        np.savez_compressed(file, inputs=np.ascontiguousarray(held_out.inputs, dtype=np.float32),
                            labels=np.asarray(held_out.labels, dtype=np.int64), split=np.array(held_out.split))


def write_reference_probs(folder: Path, probs: np.ndarray) -> None:
    """The reference's probabilities on the held-out rows, N x classes, as float32 IDX, atomically."""
    with atomic_path(Path(folder) / HELD_OUT_PROBS) as tmp:
        tmp.write_bytes(float_idx_bytes(np.asarray(probs, dtype=np.float32)))


def read_held_out(folder: Path) -> HeldOut:
    """The rows, once checked against manifest.json (a missing file names `make export`)."""
    path = Path(folder) / HELD_OUT
    if not path.is_file():
        raise PipelineError(f"{path}: not found; run `make export` (its parity gate writes it)")
    verify(Path(folder), [HELD_OUT])
    try:
        with np.load(path, allow_pickle=False) as saved:
            return HeldOut(str(saved["split"]), saved["inputs"], saved["labels"])
    except (OSError, ValueError, KeyError) as err:
        raise PipelineError(f"{path}: not a held-out file this code reads ({err}); run `make export`") from err
