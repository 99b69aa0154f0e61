"""The evaluation panel's files: the held-out rows, compactly, and the probabilities Python's ONNX
Runtime computes for each of them with every bundled variant (the page's oracle).

    eval/inputs.<dtype>.gz       N x sample_size values, little-endian, gzip; value = stored / divide
    eval/labels.gz               N labels, uint8 (uint16 past 256 classes), gzip
    eval/reference.<variant>.gz  N x classes float32 probabilities, gzip: ORT on the CPU, one row a call,
                                 as the page calls it

The encoding is the smallest exact one: MNIST's k/255 pixels as uint8 (7.8 MB raw, 1.6 MB gzipped),
integer counts as uint16, anything else float32. `encode_inputs` checks the page decodes to the very
float32 values the model saw in Python (JS divides in float64, then rounds to float32: for k/255 that
is the correctly rounded float32 quotient, as numpy's float32 division is).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from handoff.errors import PipelineError
from handoff.ort_options import cpu_session

GZIP_LEVEL = 9


@dataclass(frozen=True)
class Encoded:
    data: bytes  # gzip of the raw little-endian array
    spec: dict[str, Any]  # what the page needs to decode it: file, dtype, divide, shape


def gzipped(array: np.ndarray) -> bytes:
    """Reproducible gzip (mtime 0) of the array's little-endian bytes."""
    return gzip.compress(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes(), GZIP_LEVEL, mtime=0)


def encode_inputs(inputs: np.ndarray) -> Encoded:
    """float32 N x ... -> the smallest exact encoding (uint8 / 255, uint16, float32), checked by decoding."""
    flat = np.ascontiguousarray(inputs, dtype=np.float32).reshape(len(inputs), -1)
    candidates = [("uint8", 255.0), ("uint16", 1.0), ("float32", 1.0)]
    for dtype, divide in candidates:
        limit = np.iinfo(dtype).max if dtype != "float32" else None
        stored = flat * np.float32(divide) if limit is not None else flat
        if limit is not None:
            stored = np.rint(stored)
            if stored.min() < 0 or stored.max() > limit:
                continue
        stored = stored.astype(dtype)
        decoded = stored.astype(np.float32) / np.float32(divide)
        if np.array_equal(decoded, flat):
            file = f"eval/inputs.{dtype}.gz"
            return Encoded(gzipped(stored), {"file": file, "dtype": dtype, "divide": divide, "shape": list(flat.shape)})
    raise PipelineError("held-out inputs do not survive a float32 round trip")  # float32 always does


def encode_labels(labels: np.ndarray, classes: int) -> Encoded:
    dtype = "uint8" if classes <= 256 else "uint16"
    return Encoded(gzipped(np.asarray(labels).astype(dtype)), {"file": "eval/labels.gz", "dtype": dtype, "shape": [len(labels)]})


def reference_probabilities(model: Path, input_name: str, inputs: np.ndarray) -> np.ndarray:
    """float32 N x classes: ONNX Runtime (CPU, default options) one row a call, the page's call shape.
    Batch 1 matters for the int8-dynamic variant, whose activation scales come from the batch."""
    session = cpu_session(model, {})
    rows = [session.run(None, {input_name: inputs[i : i + 1]})[0] for i in range(len(inputs))]
    return np.concatenate(rows).astype(np.float32)


def evaluation_files(inputs: np.ndarray, labels: np.ndarray, classes: int, models: dict[str, Path],
                     input_name: str) -> tuple[dict[str, bytes], dict[str, Any]]:
    """(file name -> bytes, the page's "evaluation" spec) for the rows and every variant in `models`."""
    encoded_inputs, encoded_labels = encode_inputs(inputs), encode_labels(labels, classes)
    files = {encoded_inputs.spec["file"]: encoded_inputs.data, encoded_labels.spec["file"]: encoded_labels.data}
    reference = {}
    for variant, model in models.items():
        probs = reference_probabilities(model, input_name, inputs)
        name = f"eval/reference.{variant}.gz"
        files[name] = gzipped(probs)
        reference[variant] = {"file": name, "dtype": "float32", "shape": list(probs.shape),
                              "accuracy": float((probs.argmax(1) == labels).mean())}
    spec = {"rows": len(inputs), "inputs": encoded_inputs.spec, "labels": encoded_labels.spec, "reference": reference}
    return files, spec
