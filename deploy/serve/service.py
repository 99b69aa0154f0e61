"""One loaded model version, as both the HTTP and gRPC sides see it: the bundle's contract and
metadata, the dynamic batcher that runs it, and its two ledgers (Triton's statistics and its
Prometheus children), both fed by the batcher's one record per batch; torch-free. The server's set
of them (which model and version answers a request) is deploy.serve.models.

Both protocols check a request's form with deploy.serve.protocol, then `await service.infer(inputs)`;
its values are checked with its batch's in the batcher's thread (`protocol.refusal`: a 400). A full
queue is `ProtocolError(503)`, which gRPC answers as UNAVAILABLE.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from deploy.batch_policy import BatchPolicy
from deploy.bundle import Bundle
from deploy.serve.batcher import Batcher, BatchRecord, QueueFull
from deploy.serve.metrics import Metrics
from deploy.serve.protocol import DATATYPE, ProtocolError, refusal
from deploy.serve.statistics import Statistics


@dataclass(frozen=True)
class ServingLimits:
    policy: BatchPolicy  # rows per request and per ORT call (Triton's max_batch_size), queue delay and bound
    max_request_bytes: int
    dynamic_batching: bool = True  # off: every request is its own ORT call (what --no-dynamic-batching measures)

    @property
    def max_batch(self) -> int:
        return self.policy.max_batch


class ModelService:
    """`bundle` served as model `name`, version `version` (a repository's folder names; a lone bundle's
    own contract otherwise)."""

    def __init__(self, bundle: Bundle, limits: ServingLimits, metrics: Metrics, name: str | None = None,
                 version: str | None = None) -> None:
        self.bundle, self.contract, self.limits = bundle, bundle.contract, limits
        self.name, self.version = name or bundle.contract.model_name, version or bundle.contract.version
        self.statistics = Statistics()
        # Without dynamic batching a batch is at most one request: the oldest always goes, whatever its rows.
        policy = limits.policy if limits.dynamic_batching else dataclasses.replace(limits.policy, max_batch=1)
        self.batcher = Batcher(bundle.run, policy, self._record_batch, lambda rows: refusal(rows, self.contract))
        self.metrics = metrics.model(self.name, self.version, lambda: self.batcher.queued)

    def _record_batch(self, batch: BatchRecord) -> None:
        self.statistics.record(batch)
        self.metrics.record_batch(batch)

    def start(self) -> None:
        self.batcher.start()

    def drain(self) -> None:
        """SIGTERM: answer what is queued without waiting out the queue delay."""
        self.batcher.flush()

    def stop(self) -> None:
        """Answer every queued request, then end the thread (an unload, or the server's exit)."""
        self.batcher.stop()
        self.metrics.forget()

    @property
    def running(self) -> bool:
        """The model is loaded and verified before the service exists; it serves while its thread runs."""
        return self.batcher.alive

    def infer(self, inputs: np.ndarray):
        """Queue inputs of a checked form for the next batch now; an awaitable of their probabilities. Not a
        coroutine on purpose: the request is queued before the caller next yields to the event loop,
        so an unload that follows cannot strand it (deploy.serve.models)."""
        try:
            return self.batcher.infer(inputs)
        except QueueFull as err:
            raise ProtocolError(503, f"server busy: {err}; retry later") from err

    def metadata(self, versions: list[str]) -> dict:
        """The protocol's model metadata, naming `versions` (this one, or all of the model's loaded)."""
        contract = self.contract
        return {
            "name": self.name,
            "versions": versions,
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": contract.input_name, "datatype": DATATYPE, "shape": [-1, *contract.input_shape]}],
            "outputs": [{"name": contract.output_name, "datatype": DATATYPE, "shape": [-1, len(contract.classes)]}],
        }

    def statistics_entry(self) -> dict:
        """This version's entry in Triton's statistics response."""
        return self.statistics.triton(self.name, self.version)
