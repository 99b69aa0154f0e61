"""ONNX Runtime session options as plain records: the search space `python -m export.tune` measures,
and the record -> `SessionOptions` mapping the bench, the predictor and the server all use.

Torch-free (deploy/ imports it). A record is JSON-able, e.g.
    {"graph_optimization_level": "ORT_ENABLE_ALL", "intra_op_num_threads": 0, "allow_spinning": true,
     "enable_mem_pattern": true, "execution_mode": "ORT_SEQUENTIAL"}
intra_op_num_threads 0 means ORT's default, one thread per physical core: a record tuned on one
machine stays meaningful on another with a different core count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnxruntime as ort

# ORT's own defaults, the starting point of the search and what an untuned session gets.
DEFAULT_OPTIONS: dict[str, Any] = {
    "graph_optimization_level": "ORT_ENABLE_ALL",
    "intra_op_num_threads": 0,
    "allow_spinning": True,
    "enable_mem_pattern": True,
    "execution_mode": "ORT_SEQUENTIAL",
}

# The values the tuner tries for each option, in the order it visits them (threads first: it
# decides most at batch 1, where a thread pool's wake-up costs as much as a layer).
SEARCH_SPACE: dict[str, tuple[Any, ...]] = {
    "intra_op_num_threads": (0, 1),
    "allow_spinning": (True, False),
    "graph_optimization_level": ("ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL"),
    "enable_mem_pattern": (True, False),
    "execution_mode": ("ORT_SEQUENTIAL", "ORT_PARALLEL"),
}


def session_options(record: dict[str, Any] | None = None) -> ort.SessionOptions:
    """SessionOptions for `record` (missing keys: ORT's defaults)."""
    chosen = {**DEFAULT_OPTIONS, **(record or {})}
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, chosen["graph_optimization_level"])
    options.execution_mode = getattr(ort.ExecutionMode, chosen["execution_mode"])
    options.intra_op_num_threads = int(chosen["intra_op_num_threads"])
    # Sequential: one chain of layers, nothing runs beside it. Parallel needs ORT's own inter-op
    # pool (with 1 thread ORT falls back to sequential and the option would measure nothing).
    options.inter_op_num_threads = 1 if chosen["execution_mode"] == "ORT_SEQUENTIAL" else 0
    options.enable_mem_pattern = bool(chosen["enable_mem_pattern"])
    # "0" stops idle intra-op threads from busy-waiting for the next call (ORT's config key)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if chosen["allow_spinning"] else "0")
    return options


def save_optimized(model: str, out: str, record: dict[str, Any]) -> None:
    """Write the graph ORT runs for `record` (fused, constant-folded) to `out`, so a server can load it
    without optimising at startup. Capped at ORT_ENABLE_EXTENDED: ORT_ENABLE_ALL adds layout changes
    specific to this CPU, which ORT warns not to carry to another machine."""
    portable = {**DEFAULT_OPTIONS, **record}
    if portable["graph_optimization_level"] == "ORT_ENABLE_ALL":
        portable["graph_optimization_level"] = "ORT_ENABLE_EXTENDED"
    options = session_options(portable)
    options.optimized_model_filepath = out
    ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def options_for_batch(tuned: dict[str, dict[str, Any]], batch_size: int) -> dict[str, Any]:
    """The record tuned for the batch size nearest `batch_size` on a log scale.

    `tuned` maps batch sizes (as strings, the JSON keys) to {"options": record, ...}; empty: defaults.
    """
    if not tuned:
        return dict(DEFAULT_OPTIONS)
    nearest = min(tuned, key=lambda size: abs(math.log(int(size)) - math.log(max(batch_size, 1))))
    return {**DEFAULT_OPTIONS, **tuned[nearest]["options"]}


def describe(record: dict[str, Any]) -> str:
    """One line for logs and reports: only what differs from ORT's defaults."""
    changed = {k: v for k, v in record.items() if DEFAULT_OPTIONS.get(k) != v}
    return ", ".join(f"{k}={v}" for k, v in changed.items()) or "ORT defaults"


def bound_call(session: ort.InferenceSession, inputs: np.ndarray) -> tuple[Callable[[], None], ort.OrtValue]:
    """The cheapest call ORT's Python API offers for a fixed batch: input and output bound once (no
    feed dict, name lookup or output allocation per call), then `run_with_iobinding`. Returns the
    call and the output OrtValue it fills (`.numpy()` reads it). `inputs` must stay alive and unchanged.
    """
    binding = session.io_binding()
    binding.bind_cpu_input(session.get_inputs()[0].name, inputs)
    output_meta = session.get_outputs()[0]
    output = ort.OrtValue.ortvalue_from_numpy(np.empty((len(inputs), output_meta.shape[1]), np.float32))
    binding.bind_ortvalue_output(output_meta.name, output)

    def call() -> None:
        session.run_with_iobinding(binding)

    call.keep_alive = (inputs, binding)  # the binding points at these buffers
    return call, output
