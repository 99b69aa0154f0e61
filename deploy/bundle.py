"""A deploy bundle, verified and loaded for inference, torch-free.

A bundle is the folder `make deploy` writes (`python -m deploy.build`): `model.onnx` plus
`manifest.json` listing the sha256 and size of every file. `load_bundle` refuses a bundle whose
files do not match that list, then opens one ONNX Runtime session and reads the model's contract
(input name and per-sample shape, classes, valid input range, predictor file format) from the
graph and the metadata the export stage stamped on it; nothing is retyped here.

Everything under `deploy/` runs without torch; the predictor and the server share this module.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pipeline.errors import PipelineError, first_line
from pipeline.manifest import MANIFEST, read_manifest, verify

MODEL_FILE = "model.onnx"
ONNX_FLOAT = "tensor(float)"


class ExitCode(IntEnum):
    """The predictor's exit codes, one per kind of problem (listed in `mlp-predict --help`)."""

    OK = 0
    USAGE = 2  # bad command line
    MISSING_INPUT = 3  # an input file or folder does not exist, or a folder holds no images
    NOT_READABLE = 4  # not an image, .npy or IDX file (or one that cannot be decoded)
    BAD_SHAPE = 5  # wrong shape or dtype for the model
    BAD_VALUES = 6  # NaN, infinity or values outside the model's input range
    BAD_CSV = 7  # a CSV without the training columns, or with a malformed row
    BAD_MODEL = 8  # the bundle is missing, tampered with, or not loadable


class DeployError(PipelineError):
    """A one-line, user-facing problem with a bundle or an input, and the exit code it maps to."""

    def __init__(self, message: str, code: ExitCode) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Contract:
    """What the model takes and returns, read from `model.onnx`."""

    model_name: str  # e.g. mnist_mlp: the Triton and Open Inference Protocol model name
    version: str  # the ONNX model_version
    dataset: str
    input_name: str
    input_shape: tuple[int, ...]  # one sample; the graph's batch dimension is dynamic
    output_name: str
    classes: tuple[str, ...]
    input_min: float
    input_max: float | None  # None: no upper bound (values must still be finite)
    input_format: str  # "grayscale-image" | "otto-csv": which files the predictor reads

    def check(self, inputs: np.ndarray) -> None:
        """Refuse a batch the model must not see: wrong dtype or shape, non-finite or out of range."""
        if inputs.dtype != np.float32:
            raise DeployError(f"expected float32 inputs, got {inputs.dtype}", ExitCode.BAD_SHAPE)
        if inputs.ndim != 1 + len(self.input_shape) or tuple(inputs.shape[1:]) != self.input_shape or not len(inputs):
            raise DeployError(
                f"expected shape N x {' x '.join(map(str, self.input_shape))} with N >= 1, got {list(inputs.shape)}",
                ExitCode.BAD_SHAPE,
            )
        if not np.isfinite(inputs).all():
            raise DeployError("inputs hold NaN or infinity", ExitCode.BAD_VALUES)
        low, high = float(inputs.min()), float(inputs.max())
        if low < self.input_min or (self.input_max is not None and high > self.input_max):
            raise DeployError(
                f"input values span [{low:g}, {high:g}], outside the model's range {self.range_text()}",
                ExitCode.BAD_VALUES,
            )

    def range_text(self) -> str:
        return f"[{self.input_min:g}, {'inf' if self.input_max is None else f'{self.input_max:g}'}]"

    @property
    def sample_size(self) -> int:
        return math.prod(self.input_shape)


class Bundle:
    """A verified bundle with one ONNX Runtime session, shared by every caller (ORT's `run` is
    thread-safe, so the server's worker threads use it concurrently)."""

    def __init__(self, path: Path, session: ort.InferenceSession, contract: Contract) -> None:
        self.path = path
        self.session = session
        self.contract = contract

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """float32 N x classes probabilities for checked float32 N x input_shape inputs."""
        self.contract.check(inputs)
        return self.session.run([self.contract.output_name], {self.contract.input_name: inputs})[0]


def verify_bundle(path: Path) -> list[str]:
    """Check every file `manifest.json` lists against its sha256; returns their names."""
    path = Path(path)
    if not (path / MANIFEST).is_file():
        raise DeployError(f"{path}: not a deploy bundle (no {MANIFEST}); build one with `make deploy`", ExitCode.BAD_MODEL)
    try:
        names = sorted(read_manifest(path)["artifacts"])
        if MODEL_FILE not in names:
            raise PipelineError(f"{path / MANIFEST}: lists no {MODEL_FILE}")
        verify(path, names)
    except PipelineError as err:
        raise DeployError(f"refusing the bundle: {err}", ExitCode.BAD_MODEL) from err
    return names


def load_bundle(path: Path, session_options: ort.SessionOptions | None = None) -> Bundle:
    """Verify the bundle at `path` and open its model on the CPU."""
    path = Path(path)
    verify_bundle(path)
    try:
        session = ort.InferenceSession(
            str(path / MODEL_FILE), sess_options=session_options, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # ORT raises its own Fail/InvalidGraph/...; any of them means no model
        raise DeployError(f"{path / MODEL_FILE}: ONNX Runtime cannot load it ({first_line(err)})", ExitCode.BAD_MODEL) from err
    return Bundle(path, session, read_contract(session, path / MODEL_FILE))


def read_contract(session: ort.InferenceSession, source: Path) -> Contract:
    """The contract from the session's graph (names, shapes, types) and its metadata."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise DeployError(f"{source}: expected one input and one output, got {len(inputs)} and {len(outputs)}", ExitCode.BAD_MODEL)
    graph_input, graph_output = inputs[0], outputs[0]
    sample_shape = tuple(graph_input.shape[1:])
    if graph_input.type != ONNX_FLOAT or not all(isinstance(d, int) for d in sample_shape):
        raise DeployError(f"{source}: input {graph_input.name} is {graph_input.type} {graph_input.shape}; "
                          "expected float32 with a dynamic batch and fixed sample dims", ExitCode.BAD_MODEL)
    meta = session.get_modelmeta()
    props = meta.custom_metadata_map
    try:
        classes = tuple(json.loads(props["class_labels"]))
        contract = Contract(
            model_name=props["model_name"],
            version=str(meta.version),
            dataset=props["dataset"],
            input_name=graph_input.name,
            input_shape=sample_shape,
            output_name=graph_output.name,
            classes=classes,
            input_min=float(props["input_min"]),
            input_max=float(props["input_max"]) if props["input_max"] else None,
            input_format=props["input_format"],
        )
    except (KeyError, ValueError) as err:
        raise DeployError(f"{source}: metadata lacks the deploy contract ({first_line(err)}); re-run `make export`",
                          ExitCode.BAD_MODEL) from err
    if graph_output.shape[1:] != [len(classes)]:
        raise DeployError(f"{source}: output {graph_output.name} has shape {graph_output.shape}, "
                          f"expected N x {len(classes)} classes", ExitCode.BAD_MODEL)
    return contract
