"""The model contract: what an exported model takes and returns, written once into the ONNX file's
metadata by the exporter (`contract_metadata`) and read back from it by everything after export
(`read_contract`: the bundle builder, the predictor, the server and the page). Torch-free.

    metadata key   written by export/to_onnx.py           read into Contract
    model_name     "<dataset>_mlp"                        model_name (Triton's and the protocol's name)
    dataset        "mnist" | "otto"                       dataset
    class_labels   JSON list of class names               classes
    input_min      lowest valid input value               input_min
    input_max      highest, "" for none                   input_max (None)
    input_format   one of INPUT_FORMATS                   input_format (which files a predictor reads)
The graph gives the rest: one float32 input with a dynamic batch and fixed sample dims, one output
of N x classes probabilities (OUTPUT_NAME), and the ONNX model_version.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np
import onnxruntime as ort

from handoff.errors import PipelineError, first_line

ONNX_FLOAT = "tensor(float)"
OUTPUT_NAME = "probs"  # every artifact's one output: float32 N x classes softmax probabilities


class InputFormat(StrEnum):
    """The files a deployed predictor reads for a model, and how the page takes one sample."""

    GRAYSCALE_IMAGE = "grayscale-image"  # images, .npy or IDX; N x 1 x H x W in [0, 1] (MNIST)
    OTTO_CSV = "otto-csv"  # CSV rows with columns feat_1..feat_93 (Otto)


INPUT_FORMATS = tuple(InputFormat)
# The metadata keys of the contract (the exporter stamps others beside them: provenance, metrics).
MODEL_NAME, DATASET, CLASS_LABELS, INPUT_MIN, INPUT_MAX, INPUT_FORMAT = (
    "model_name", "dataset", "class_labels", "input_min", "input_max", "input_format")


class ContractError(PipelineError):
    """A model or a batch that breaks the contract. `problem` says which: "model" (the file lacks
    or breaks the contract), "shape" (a batch's dtype or shape) or "values" (NaN, infinity, range)."""

    def __init__(self, message: str, problem: str) -> None:
        super().__init__(message)
        self.problem = problem


@dataclass(frozen=True)
class Contract:
    """What the model takes and returns, read from an ONNX file."""

    model_name: str  # e.g. mnist_mlp: the Triton and Open Inference Protocol model name
    version: str  # the ONNX model_version
    dataset: str
    input_name: str
    input_shape: tuple[int, ...]  # one sample; the graph's batch dimension is dynamic
    output_name: str
    classes: tuple[str, ...]
    input_min: float
    input_max: float | None  # None: no upper bound (values must still be finite)
    input_format: str  # an InputFormat: which files the predictor reads

    def check(self, inputs: np.ndarray) -> None:
        """Refuse a batch the model must not see: wrong dtype or shape, non-finite or out of range."""
        if inputs.dtype != np.float32:
            raise ContractError(f"expected float32 inputs, got {inputs.dtype}", "shape")
        if inputs.ndim != 1 + len(self.input_shape) or tuple(inputs.shape[1:]) != self.input_shape or not len(inputs):
            raise ContractError(
                f"expected shape N x {' x '.join(map(str, self.input_shape))} with N >= 1, got {list(inputs.shape)}", "shape")
        # Two reductions, not three: min and max propagate NaN and reach an infinity, so they also
        # say whether every value is finite (the server runs this on every batch it serves).
        low, high = float(inputs.min()), float(inputs.max())
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ContractError("inputs hold NaN or infinity", "values")
        if low < self.input_min or (self.input_max is not None and high > self.input_max):
            raise ContractError(f"input values span [{low:g}, {high:g}], outside the model's range {self.range_text()}",
                                "values")

    def range_text(self) -> str:
        return f"[{self.input_min:g}, {'inf' if self.input_max is None else f'{self.input_max:g}'}]"

    @property
    def sample_size(self) -> int:
        return math.prod(self.input_shape)


def contract_metadata(model_name: str, dataset: str, classes: list[str], input_range: tuple[float, float | None],
                      input_format: str) -> dict[str, str]:
    """The writer: the contract's ONNX metadata entries (the exporter sets them with onnx.helper.set_model_props)."""
    if input_format not in INPUT_FORMATS:
        raise PipelineError(f"unknown input format {input_format!r}; one of {', '.join(INPUT_FORMATS)}")
    low, high = input_range
    return {MODEL_NAME: model_name, DATASET: dataset, CLASS_LABELS: json.dumps(list(classes)),
            INPUT_MIN: f"{low:g}", INPUT_MAX: "" if high is None else f"{high:g}", INPUT_FORMAT: str(input_format)}


def read_contract(session: ort.InferenceSession, source: Path) -> Contract:
    """The reader: the contract from a session's graph (names, shapes, types) and its metadata."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or len(outputs) != 1:
        raise ContractError(f"{source}: expected one input and one output, got {len(inputs)} and {len(outputs)}", "model")
    graph_input, graph_output = inputs[0], outputs[0]
    sample_shape = tuple(graph_input.shape[1:])
    if graph_input.type != ONNX_FLOAT or not all(isinstance(d, int) for d in sample_shape):
        raise ContractError(f"{source}: input {graph_input.name} is {graph_input.type} {graph_input.shape}; "
                            "expected float32 with a dynamic batch and fixed sample dims", "model")
    meta = session.get_modelmeta()
    contract = _from_metadata(meta.custom_metadata_map, str(meta.version), graph_input.name, sample_shape,
                              graph_output.name, source)
    if graph_output.shape[1:] != [len(contract.classes)]:
        raise ContractError(f"{source}: output {graph_output.name} has shape {graph_output.shape}, "
                            f"expected N x {len(contract.classes)} classes", "model")
    return contract


def _from_metadata(props: dict[str, str], version: str, input_name: str, input_shape: tuple[int, ...],
                   output_name: str, source: Path) -> Contract:
    try:
        return Contract(model_name=props[MODEL_NAME], version=version, dataset=props[DATASET], input_name=input_name,
                        input_shape=input_shape, output_name=output_name, classes=tuple(json.loads(props[CLASS_LABELS])),
                        input_min=float(props[INPUT_MIN]),
                        input_max=float(props[INPUT_MAX]) if props[INPUT_MAX] else None,
                        input_format=InputFormat(props[INPUT_FORMAT]))
    except (KeyError, ValueError) as err:
        raise ContractError(f"{source}: metadata lacks the deploy contract ({first_line(err)}); re-run `make export`",
                            "model") from err


def load_contract(model: Path) -> Contract:
    """The contract of the ONNX file at `model` (a CPU session is opened to read it)."""
    try:
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own Fail/InvalidGraph/...; any of them means no model
        raise ContractError(f"{model}: ONNX Runtime cannot load it ({first_line(err)})", "model") from err
    return read_contract(session, model)
