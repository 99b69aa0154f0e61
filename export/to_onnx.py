"""ONNX export of the softmax head: torch.onnx.export(dynamo=True), one self-contained file,
dynamic batch, metadata for deployment, and onnx.checker's full check."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import onnx
import torch

from export.head import SoftmaxHead, contract_text, example_batch
from export.recorded_warnings import recording_warnings
from handoff.atomic import atomic_path
from handoff.contract import OUTPUT_NAME, contract_metadata
from handoff.errors import PipelineError, first_line
from pipeline.datasets.registry import dataset_spec
from pipeline.provenance import module_version

OPSET = 21  # ONNX opset: ONNX Runtime >= 1.18, TensorRT 10 and Triton's ORT backend all run it
MODEL_VERSION = 1  # bump when the input/output contract changes


def export_onnx(head: SoftmaxHead, payload: dict[str, Any], checkpoint_sha256: str, path: Path) -> dict[str, Any]:
    """Export `head` to `path` (atomically), stamp its metadata, run the checker; returns the report entry."""
    started = time.perf_counter()
    with recording_warnings() as recorded:
        model = _export(head, payload)
    model.model_version = MODEL_VERSION
    model.doc_string = "; ".join(contract_text(payload).values())
    model.graph.name = _model_name(payload)
    onnx.helper.set_model_props(model, metadata_props(payload, checkpoint_sha256))
    with atomic_path(path) as tmp:
        onnx.save_model(model, tmp)  # the weights are small: one file, no external data
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except onnx.checker.ValidationError as err:
            raise PipelineError(f"ONNX export failed the checker: {first_line(err)}") from err
    return {
        "file": path.name,
        "method": "torch.onnx.export(dynamo=True)",
        "opset": OPSET,
        "seconds": time.perf_counter() - started,
        "checker": "onnx.checker.check_model(full_check=True) passed",
        "warnings": recorded,
    }


def _export(head: SoftmaxHead, payload: dict[str, Any]) -> onnx.ModelProto:
    try:
        program = torch.onnx.export(
            head,
            (example_batch(payload),),
            dynamo=True,
            opset_version=OPSET,
            input_names=[payload["input_name"]],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),  # positional: SoftmaxHead.forward's one input
            external_data=False,
            verbose=False,
        )
    except Exception as err:  # any exporter failure means no artifact: report why
        raise PipelineError(f"ONNX export failed: {first_line(err)}") from err
    return program.model_proto


def held_out_metrics(payload: dict[str, Any]) -> tuple[str, str]:
    """The checkpoint's held-out accuracy and log-loss keys (MNIST: test_*, Otto: val_*)."""
    spec = dataset_spec(payload["dataset"])
    return spec.accuracy_metric, spec.loss_metric


def _model_name(payload: dict[str, Any]) -> str:
    return f"{payload['dataset']}_mlp"


def metadata_props(payload: dict[str, Any], checkpoint_sha256: str) -> dict[str, str]:
    """What a deployer needs to know, readable through ORT's `get_modelmeta().custom_metadata_map`:
    the model contract (handoff.contract writes those keys; deploy/ and web/ read them back), and
    where the model came from."""
    contract = contract_text(payload)
    spec = dataset_spec(payload["dataset"])
    return {
        **contract_metadata(_model_name(payload), payload["dataset"], payload["classes"], spec.input_range,
                            spec.input_format),
        "model_version": str(MODEL_VERSION),
        "source_checkpoint_sha256": checkpoint_sha256,
        **{key: f"{payload['metrics'][key]:.6f}" for key in held_out_metrics(payload)},
        "recipe": payload["config"]["recipe"]["name"],
        "input_contract": contract["input"],
        "output_contract": contract["output"],
        "torch_version": str(torch.__version__),
        "onnx_version": onnx.__version__,
        "onnxscript_version": module_version("onnxscript"),
        "opset": str(OPSET),
    }
