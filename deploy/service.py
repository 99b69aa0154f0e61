"""The one model a server serves, as both its HTTP and gRPC sides see it: the bundle's contract and
metadata, the dynamic batcher that runs it, the series and statistics; torch-free.

Both protocols check a request with deploy.protocol, then `await service.infer(inputs)`; a full
queue is `ProtocolError(503)`, which gRPC answers as UNAVAILABLE.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploy.batcher import Batcher, BatchPolicy, QueueFull
from deploy.bundle import Bundle
from deploy.metrics import Metrics
from deploy.protocol import DATATYPE, ProtocolError

SERVER_NAME = "mlp-serve"
EXTENSIONS = ("binary_tensor_data", "statistics")


@dataclass(frozen=True)
class ServingLimits:
    max_batch: int  # rows per request, and per ORT call (Triton's max_batch_size)
    max_queue_delay_us: int
    max_queue_size: int
    max_request_bytes: int
    dynamic_batching: bool = True  # off: every request is its own ORT call (what --no-dynamic-batching measures)


class ModelService:
    def __init__(self, bundle: Bundle, limits: ServingLimits, server_version: str) -> None:
        self.bundle, self.contract, self.limits = bundle, bundle.contract, limits
        self.server_version = server_version
        self.metrics = Metrics(self.contract.model_name)
        rows_per_call = limits.max_batch if limits.dynamic_batching else 1  # 1: the oldest request always runs alone
        policy = BatchPolicy(rows_per_call, limits.max_queue_delay_us, limits.max_queue_size)
        self.batcher = Batcher(bundle.run, policy, self.metrics.observe_batch)
        self.metrics.watch_queue(lambda: self.batcher.queued)

    def start(self) -> None:
        self.batcher.start()

    def drain(self) -> None:
        """SIGTERM: answer what is queued without waiting out the queue delay."""
        self.batcher.flush()

    def stop(self) -> None:
        self.batcher.stop()

    @property
    def ready(self) -> bool:
        """The model is loaded and verified before the service exists; ready while its thread runs."""
        return self.batcher.alive

    def check_model(self, model: str, version: str | None = None) -> None:
        """404 unless `model` (and `version`, when given) is the one served."""
        contract = self.contract
        if model != contract.model_name:
            raise ProtocolError(404, f"unknown model {model!r}; this server has {contract.model_name!r}")
        if version not in (None, "", contract.version):
            raise ProtocolError(404, f"unknown version {version!r} of {model!r}; it has version {contract.version!r}")

    def is_ready(self, model: str, version: str | None = None) -> bool:
        try:
            self.check_model(model, version)
        except ProtocolError:
            return False
        return self.ready

    async def infer(self, inputs: np.ndarray) -> np.ndarray:
        """Probabilities for checked inputs, run in the next batch."""
        try:
            future = self.batcher.infer(inputs)
        except QueueFull as err:
            raise ProtocolError(503, f"server busy: {err}; retry later") from err
        probs = await future
        self.metrics.rows.inc(len(probs))
        return probs

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

    def statistics(self) -> dict:
        """Triton's statistics response for the one model."""
        return {"model_stats": [self.batcher.stats.triton(self.contract.model_name, self.contract.version)]}
