"""Inference throughput and latency per runtime, variant, device and batch size, on real held-out
inputs of the exported model's dataset (MNIST test images, or Otto validation rows).

Each timed call runs the exported function (softmax head) on a batch already on the device; the
runtimes are listed in bench.suites.runtimes (ours, the peers, and the GPU fast paths). Every row also
records the backend's held-out accuracy and argmax agreement with float32 ONNX Runtime, so a
faster row computing a different function shows it.
"""

from __future__ import annotations

import pytest

from bench.suites.measuring import measure, real_inputs
from pipeline.model import forward_macs


def test_inference(benchmark, runtime, device, batch_size, backend_for, quality_of, exported, dataset, settings):
    backend = backend_for(runtime, device)
    if backend.skipped is not None:
        pytest.skip(backend.skipped)
    head, _ = exported
    benchmark.group = f"inference {device.type} batch {batch_size}"
    benchmark.extra_info.update(kind="inference", dataset=dataset.name, backend=backend.name, device=device.type,
                                batch_size=batch_size, variant=backend.details.get("variant", "fp32"),
                                forward_macs=forward_macs(head.model), **quality_of(backend))
    benchmark.extra_info.update({k: v for k, v in backend.details.items() if k != "warnings"})
    call = backend.prepare(real_inputs(dataset, batch_size))
    measure(benchmark, call, batch_size, settings)
