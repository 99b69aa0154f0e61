"""What a model takes and returns (its contract), read from the ONNX graph and the metadata the
export stage stamped on it, and the predictor's exit codes; torch-free, shared by deploy/."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import numpy as np
import onnxruntime as ort

from pipeline.handoff.errors import PipelineError, first_line

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
