"""ONNX Runtime's per-call floor: what one `run` costs on this machine when the graph does nothing.

    floor = ort_floor(model_path, "int8", tuning.records("int8"))   # bench.suites.test_targets
    call = floor.prepare(inputs)                                     # timed beside the artifact's own call

The floor graph takes the artifact's input (same name, shape and dtype) and holds one node,
Flatten, so its only work is copying the input to the output (3.1 KB a row for MNIST; the model's
own output is 40 B a row: at batch 1 the copy is a fraction of a microsecond, at batch 1024 about a
third of a millisecond). It runs with the session options `make tune` chose for the variant, per
batch size, and is called exactly as the tuned artifact is (`bound_call`: input and output bound
once, `run_with_iobinding`), so an artifact's time over its floor is what its graph costs above the
runtime's own per-call work. Why Flatten: no single ONNX operator maps the N x 1 x 28 x 28 input to
an N x 10 output without computing; an extra Slice would add a node's dispatch to the floor.

    first = ort_first_layer(model_path, "int8", tuning.records("int8"))   # the same, for one more rung

The other rung, between the floor and the whole artifact: the artifact's own graph cut at the output
of its first matrix product (onnx.utils.Extractor; whatever precedes it, such as the input's
quantisation, stays), with the same options and call. It does a part of the artifact's work with the
artifact's own kernels, so the artifact cannot take less: its time over the floor bounds from below
how near the floor any graph with that first layer can come in this runtime.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnx.utils
from onnx import TensorProto, helper

from export.backends import Backend
from handoff.ort_options import SessionPool, bound_call, describe

OPSET = 17


def floor_graph(model_path: Path) -> onnx.ModelProto:
    """A one-node (Flatten) model whose input is `model_path`'s first input."""
    model = onnx.load(str(model_path), load_external_data=False)
    source = model.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in source.type.tensor_type.shape.dim]
    flat = helper.make_tensor_value_info("flat", TensorProto.FLOAT, [dims[0], math.prod(dims[1:])])
    graph = helper.make_graph([helper.make_node("Flatten", [source.name], ["flat"], axis=1)], "ort_floor", [source], [flat])
    floor = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=model.ir_version)
    onnx.checker.check_model(floor)
    return floor


MATRIX_PRODUCTS = ("Gemm", "MatMul", "MatMulInteger")  # the ops a layer's product is, in our variants' graphs


def first_layer_graph(model_path: Path) -> onnx.ModelProto:
    """`model_path`'s graph up to the output of its first Gemm/MatMul/MatMulInteger node."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)))  # the extractor needs the cut's type
    product = next((node for node in model.graph.node if node.op_type in MATRIX_PRODUCTS), None)
    if product is None:
        raise ValueError(f"{model_path.name}: no {'/'.join(MATRIX_PRODUCTS)} node")
    return onnx.utils.Extractor(model).extract_model([model.graph.input[0].name], [product.output[0]])


def ort_first_layer(model_path: Path, variant: str, tuned: dict[str, dict]) -> Backend:
    """The artifact up to its first layer's product, with its tuned options: ort-first-layer-<variant>-cpu."""
    details = {"variant": variant, "graph": "the artifact's graph up to its first matrix product's output"}
    return _backend(f"ort-first-layer-{variant}-cpu", _pool(first_layer_graph(model_path), tuned), tuned, details)


def _backend(name: str, pool: SessionPool, tuned: dict[str, dict], details: dict[str, str]) -> Backend:
    """A rung as the bench's Backend: `run` for checks, `prepare` for the bound call the targets time."""
    def run(inputs):
        session = pool.session_for(len(inputs))
        return session.run(None, {session.get_inputs()[0].name: inputs})[0]

    def prepare(inputs):
        call, _ = bound_call(pool.session_for(len(inputs)), np.ascontiguousarray(inputs))
        return call

    tuned_options = {bs: describe(t["options"]) for bs, t in tuned.items()} or "ORT defaults (not tuned)"
    return Backend(name, "cpu", run, prepare, details={**details, "tuned_options": tuned_options})


def _pool(model: onnx.ModelProto, tuned: dict[str, dict]) -> SessionPool:
    """Every tuned record's CPU session of `model`, open now (each batch size maps to one of them)."""
    with tempfile.TemporaryDirectory(prefix="ort-rung-") as folder:  # SessionPool opens files
        path = Path(folder) / "model.onnx"
        onnx.save(model, str(path))
        pool = SessionPool(path, tuned)  # its default opener: a CPU session with each record's options
        pool.open_all()
    return pool


def ort_floor(model_path: Path, variant: str, tuned: dict[str, dict]) -> Backend:
    """The floor for `variant` (its file at `model_path`), with its tuned options: ort-floor-<variant>-cpu."""
    details = {"variant": variant, "graph": "one Flatten node, the artifact's input"}
    return _backend(f"ort-floor-{variant}-cpu", _pool(floor_graph(model_path), tuned), tuned, details)
