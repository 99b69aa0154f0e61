"""Lower-precision copies of `model.onnx`, made with ONNX Runtime's own tools (no hand-written kernels).

    int8          static quantization, QDQ, S8S8, calibrated on training inputs (MinMax by default),
                  ReLU folded into each Gemm's output range, the logits layer kept float32; the CPU artifact
    int8-dynamic  dynamic quantization (weights int8, activations quantized per call): the baseline
    fp16          float16 weights and arithmetic, float32 inputs, outputs and Softmax: the GPU artifact

Each starts from `quant_pre_process` (ORT's symbolic shape inference and graph optimisation): on the
dynamo exporter's graph (its value_info and transposed Gemm weights) the quantizers' own shape
inference otherwise fails with "Inferred shape and existing shape differ in dimension 0".
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)
from onnxruntime.transformers.onnx_model import OnnxModel

from handoff.cpu import INT8_DOT_FLAGS, cpu_flags
from handoff.errors import PipelineError, first_line

CALIBRATION_BATCH = 128  # rows per calibration run; MinMax only keeps running extremes


class ArrayReader(CalibrationDataReader):
    """Feeds `inputs` (float32, N x <input shape>) to the calibrator in batches."""

    def __init__(self, input_name: str, inputs: np.ndarray) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {input_name: np.ascontiguousarray(inputs[i : i + CALIBRATION_BATCH])}
            for i in range(0, len(inputs), CALIBRATION_BATCH)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def reduce_range_choice(setting: str) -> tuple[bool, str]:
    """ORT's advice: 7-bit weights (reduce_range) where the CPU lacks int8 dot products (VNNI/AMX),
    whose absence makes the u8 x s8 multiply-add saturate. Decided by capability, with the reason."""
    present = [f for f in cpu_flags()["present"] if f in INT8_DOT_FLAGS]
    if setting in ("on", "off"):
        return setting == "on", f"asked for (--reduce-range {setting}); CPU int8 dot-product flags: {present or 'none'}"
    if present:
        return False, f"full 8-bit range: this CPU has {', '.join(present)} (no u8 x s8 saturation)"
    return True, f"7-bit weights: this CPU has none of {', '.join(INT8_DOT_FLAGS)} (ORT's advice without VNNI)"


def preprocess(fp32: Path, work: Path) -> Path:
    out = work / "preprocessed.onnx"
    try:
        quant_pre_process(str(fp32), str(out), skip_symbolic_shape=False)
    except Exception as err:  # ORT's shape tools raise many types; any one means "cannot quantize"
        raise PipelineError(f"{fp32}: quant_pre_process failed ({first_line(err)})") from err
    return out


CALIBRATION_METHODS = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                       "entropy": CalibrationMethod.Entropy}


def int8_static(pre: Path, out: Path, input_name: str, calibration: np.ndarray, per_channel: bool,
                reduce_range: bool, method: str = "minmax", float_first: bool = False) -> dict[str, Any]:
    """The logits layer always stays float32 (under 1% of the multiply-adds): 8-bit logits flip the
    argmax of low-margin rows (synthetic Otto: agreement 99.07% with it quantized, 99.58% without).
    `float_first` keeps layer 1 float32 too: where per-feature standardisation is folded into it
    (Otto), its weight columns span every feature's scale, which one int8 scale per row cannot hold."""
    linear = linear_nodes(pre)
    settings = {
        "format": "QDQ", "activations": "int8", "weights": "int8", "per_channel": per_channel,
        "reduce_range": reduce_range, "calibration": method, "calibration_rows": len(calibration),
        "quantized_ops": ["Gemm", "Relu"],  # Relu: folded into the Gemm's output range, no Q/DQ pair left between layers
        "float32_layers": linear[:1] * float_first + linear[-1:],
    }
    _quantize(out, lambda: quantize_static(
        str(pre), str(out), ArrayReader(input_name, calibration), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=per_channel,
        reduce_range=reduce_range, calibrate_method=CALIBRATION_METHODS[method], op_types_to_quantize=["Gemm", "Relu"],
        nodes_to_exclude=settings["float32_layers"],
    ))
    return {"method": "onnxruntime.quantization.quantize_static", **settings}


def linear_nodes(model_path: Path) -> list[str]:
    """The names of the graph's Gemm/MatMul nodes, first layer first."""
    linear = [n.name for n in onnx.load(str(model_path)).graph.node if n.op_type in ("Gemm", "MatMul")]
    if not linear:
        raise PipelineError(f"{model_path.name}: no Gemm or MatMul node to quantize")
    return linear


def int8_dynamic(pre: Path, out: Path, per_channel: bool, reduce_range: bool) -> dict[str, Any]:
    _quantize(out, lambda: quantize_dynamic(
        str(pre), str(out), weight_type=QuantType.QInt8, per_channel=per_channel, reduce_range=reduce_range,
        op_types_to_quantize=["Gemm", "MatMul"],
    ))
    return {"method": "onnxruntime.quantization.quantize_dynamic", "weights": "int8", "activations": "int8 per call",
            "per_channel": per_channel, "reduce_range": reduce_range}


def fp16(pre: Path, out: Path) -> dict[str, Any]:
    """ORT's float16 converter (the same code as onnxconverter_common.float16). Softmax stays float32:
    in float16 its sum of exponentials rounds, and rows would no longer sum to 1 within 1e-5."""
    model = OnnxModel(onnx.load(str(pre)))
    model.convert_float_to_float16(keep_io_types=True, op_block_list=["Softmax"])
    model.topological_sort()  # the converter appends the input casts at the end of the node list
    onnx.save_model(model.model, str(out))
    return {"method": "onnxruntime.transformers OnnxModel.convert_float_to_float16", "keep_io_types": True,
            "float32_ops": ["Softmax"]}


def _quantize(out: Path, call) -> None:
    try:
        call()
    except Exception as err:  # the quantizers raise many types; each means "no artifact"
        raise PipelineError(f"quantizing to {out.name} failed: {first_line(err)}") from err


def finish(variant_path: Path, fp32: onnx.ModelProto, variant: str, settings: dict[str, Any]) -> None:
    """Stamp the fp32 model's metadata (plus the variant and how it was made) and its IR version,
    which ORT 1.31 accepts, then run onnx.checker's full check."""
    model = onnx.load(str(variant_path))
    model.ir_version = fp32.ir_version
    model.model_version = fp32.model_version
    model.doc_string = fp32.doc_string
    props = {p.key: p.value for p in fp32.metadata_props}
    props.update(variant=variant, variant_method=settings["method"])
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    onnx.save_model(model, str(variant_path))
    try:
        onnx.checker.check_model(str(variant_path), full_check=True)
    except onnx.checker.ValidationError as err:
        raise PipelineError(f"{variant_path.name} failed the ONNX checker: {first_line(err)}") from err


def work_dir(out: Path) -> tempfile.TemporaryDirectory:
    """Scratch space beside the artifacts (same filesystem, so finished files move atomically)."""
    return tempfile.TemporaryDirectory(prefix=".variants-", dir=out)
