"""The dynamic batching limits, as Triton names them: one source of their defaults and their one
validation, for the bundle builder (which records them in the bundle's manifest and Triton's
config.pbtxt) and the server (which reads them back, a flag overriding each). Torch-free.

    BatchPolicy.resolve({"max_batch": None, "max_queue_delay_us": 500}, bundle_manifest["config"]["deploy"])
    -> BatchPolicy(max_batch=<the bundle's>, max_queue_delay_us=500, max_queue_size=<the bundle's>)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from handoff.errors import PipelineError


@dataclass(frozen=True)
class BatchPolicy:
    # Rows per request (413 / Triton's max_batch_size beyond it) and per ONNX Runtime call.
    max_batch: int = 8192
    # Longest wait after the oldest queued request's arrival to fill a batch, µs. 0: batches form from
    # what queues while one runs; measured best on 2 cores at 1-64 clients (`make bench-serve`).
    max_queue_delay_us: int = 0
    # Queued requests beyond which a new one is refused (503 / UNAVAILABLE), never queued without bound.
    max_queue_size: int = 1024

    def __post_init__(self) -> None:
        for name, low in (("max_batch", 1), ("max_queue_delay_us", 0), ("max_queue_size", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise PipelineError(f"{name} must be an integer of at least {low}, got {value!r}")

    @classmethod
    def resolve(cls, given: dict[str, int | None], recorded: dict[str, Any] | None = None) -> BatchPolicy:
        """Each limit from `given` (flags; None: not given), else `recorded` (a bundle's), else the default."""
        values = {}
        for field in dataclasses.fields(cls):
            chosen = given.get(field.name)
            values[field.name] = chosen if chosen is not None else (recorded or {}).get(field.name, field.default)
        return cls(**values)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)
