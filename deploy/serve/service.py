"""The one model a server serves, as both its HTTP and gRPC sides see it: the bundle's contract and
metadata, the dynamic batcher that runs it, and its two ledgers (Triton's statistics and the
Prometheus series), both fed by the batcher's one record per batch; torch-free.

Both protocols check a request with deploy.serve.protocol, then `await service.infer(inputs)`; a
full queue is `ProtocolError(503)`, which gRPC answers as UNAVAILABLE.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from deploy.batch_policy import BatchPolicy
from deploy.bundle import Bundle
from deploy.serve.batcher import Batcher, BatchRecord, QueueFull
from deploy.serve.metrics import Metrics
from deploy.serve.protocol import DATATYPE, ProtocolError
from deploy.serve.statistics import Statistics

SERVER_NAME = "mlp-serve"
EXTENSIONS = ("binary_tensor_data", "statistics")


@dataclass(frozen=True)
class ServingLimits:
    policy: BatchPolicy  # rows per request and per ORT call (Triton's max_batch_size), queue delay and bound
    max_request_bytes: int
    dynamic_batching: bool = True  # off: every request is its own ORT call (what --no-dynamic-batching measures)

    @property
    def max_batch(self) -> int:
        return self.policy.max_batch


class ModelService:
    def __init__(self, bundle: Bundle, limits: ServingLimits, server_version: str) -> None:
        self.bundle, self.contract, self.limits = bundle, bundle.contract, limits
        self.server_version = server_version
        self.statistics = Statistics()
        self.metrics = Metrics(self.contract.model_name)
        # Without dynamic batching a batch is at most one request: the oldest always goes, whatever its rows.
        policy = limits.policy if limits.dynamic_batching else dataclasses.replace(limits.policy, max_batch=1)
        self.batcher = Batcher(bundle.run, policy, self._record_batch)
        self.metrics.watch_queue(lambda: self.batcher.queued)

    def _record_batch(self, batch: BatchRecord) -> None:
        self.statistics.record(batch)
        self.metrics.record_batch(batch)

    def start(self) -> None:
        self.batcher.start()

    def drain(self) -> None:
        """SIGTERM: answer what is queued without waiting out the queue delay."""
        self.batcher.flush()

    def stop(self) -> None:
        self.batcher.stop()

    @property
    def running(self) -> bool:
        """The model is loaded and verified before the service exists; it serves while its thread runs."""
        return self.batcher.alive

    def check_model(self, model: str, version: str | None = None) -> None:
        """404 unless `model` (and `version`, when given) is the one served."""
        contract = self.contract
        if model != contract.model_name:
            raise ProtocolError(404, f"unknown model {model!r}; this server has {contract.model_name!r}")
        if version not in (None, "", contract.version):
            raise ProtocolError(404, f"unknown version {version!r} of {model!r}; it has version {contract.version!r}")

    def model_ready(self, model: str, version: str | None = None) -> bool:
        """The protocol's model readiness: this model (and version), and the service running."""
        try:
            self.check_model(model, version)
        except ProtocolError:
            return False
        return self.running

    async def infer(self, inputs: np.ndarray) -> np.ndarray:
        """Probabilities for checked inputs, run in the next batch."""
        try:
            future = self.batcher.infer(inputs)
        except QueueFull as err:
            raise ProtocolError(503, f"server busy: {err}; retry later") from err
        return await future

    def server_metadata(self) -> dict:
        return {"name": SERVER_NAME, "version": self.server_version, "extensions": list(EXTENSIONS)}

    def model_metadata(self) -> dict:
        contract = self.contract
        return {
            "name": contract.model_name,
            "versions": [contract.version],
            "platform": "onnxruntime_onnx",
            "inputs": [{"name": contract.input_name, "datatype": DATATYPE, "shape": [-1, *contract.input_shape]}],
            "outputs": [{"name": contract.output_name, "datatype": DATATYPE, "shape": [-1, len(contract.classes)]}],
        }

    def statistics_response(self) -> dict:
        """Triton's statistics response for the one model."""
        return {"model_stats": [self.statistics.triton(self.contract.model_name, self.contract.version)]}
