"""ONNX Runtime session options as plain records: the search space `python -m export.tune` measures,
the record -> `SessionOptions` mapping, and the one session pool (a session per distinct record)
that the bench, the predictor and the server all use.

A record is JSON-able, e.g.
    {"graph_optimization_level": "ORT_ENABLE_ALL", "intra_op_num_threads": 0, "allow_spinning": true,
     "enable_mem_pattern": true, "execution_mode": "ORT_SEQUENTIAL"}
intra_op_num_threads 0 means ORT's default, one thread per physical core: a record tuned on one
machine stays meaningful on another with a different core count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
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


def pinned(threads: int | None) -> dict[str, Any]:
    """ORT's defaults with the intra-op threads pinned (None: ORT's default, one per core)."""
    return {**DEFAULT_OPTIONS, "intra_op_num_threads": threads or 0}


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


OUTPUT_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int32)": np.int32}  # ORT type -> numpy


def bound_call(session: ort.InferenceSession, inputs: np.ndarray) -> tuple[Callable[[], None], ort.OrtValue]:
    """The cheapest call ORT's Python API offers for a fixed batch: input and output bound once (no
    feed dict, name lookup or output allocation per call), then `run_with_iobinding`. Returns the
    call and the output OrtValue it fills (`.numpy()` reads it). `inputs` must stay alive and unchanged.
    """
    binding = session.io_binding()
    binding.bind_cpu_input(session.get_inputs()[0].name, inputs)
    output_meta = session.get_outputs()[0]
    output = ort.OrtValue.ortvalue_from_numpy(np.empty((len(inputs), output_meta.shape[1]), OUTPUT_DTYPES[output_meta.type]))
    binding.bind_ortvalue_output(output_meta.name, output)

    def call() -> None:
        session.run_with_iobinding(binding)

    call.keep_alive = (inputs, binding)  # the binding points at these buffers
    return call, output


Opener = Callable[[Path, dict[str, Any]], ort.InferenceSession]  # (model file, record) -> a CPU session


def cpu_session(model: Path, record: dict[str, Any]) -> ort.InferenceSession:
    return ort.InferenceSession(str(model), session_options(record), providers=["CPUExecutionProvider"])


class SessionPool:
    """One model file's CPU sessions: one per distinct options record `make tune` chose for it, so
    the batch sizes whose records are equal share a session. ORT's `run` is thread-safe, so callers
    share them. `tuned` maps batch sizes (str) to {"options": record}; empty: ORT's defaults.
    `opener` makes a session (callers wrap ORT's own errors in theirs)."""

    def __init__(self, model: Path, tuned: dict[str, dict[str, Any]], opener: Opener = cpu_session) -> None:
        self.model, self.tuned, self._open = Path(model), tuned, opener
        self._by_record: dict[str, ort.InferenceSession] = {}
        self._by_batch: dict[int, ort.InferenceSession] = {}  # filled on first use

    def options_for(self, batch_size: int) -> dict[str, Any]:
        """The record a batch of `batch_size` rows runs with."""
        return options_for_batch(self.tuned, batch_size)

    def session_for(self, batch_size: int) -> ort.InferenceSession:
        session = self._by_batch.get(batch_size)
        if session is None:
            record = self.options_for(batch_size)
            key = json.dumps(record, sort_keys=True)
            if key not in self._by_record:
                self._by_record[key] = self._open(self.model, record)
            session = self._by_batch[batch_size] = self._by_record[key]
        return session

    def open_all(self) -> ort.InferenceSession:
        """Open every tuned record's session now (a file ORT cannot load fails here, not on the
        first call); returns one of them."""
        sizes = [int(size) for size in self.tuned] or [1]
        return [self.session_for(size) for size in sizes][0]

    def describe(self) -> str:
        """The options in use, for logs: per tuned batch size, or ORT's defaults when untuned."""
        if not self.tuned:
            return "ORT defaults (not tuned for this variant)"
        sizes = sorted(self.tuned, key=int)
        return "; ".join(f"batch {size}: {describe(self.options_for(int(size)))}" for size in sizes) \
            + " (a batch uses the nearest tuned size)"
