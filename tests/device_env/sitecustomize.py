"""Put this folder first on PYTHONPATH and Python imports this file at start-up: from then on the
packages our venv has but the lent GPU machine's image lacks raise ImportError, as they would there.
The dry run of bench/gpu_check.sh runs under it, so the first GPU run cannot die on an import.

The image's package list: /work/.library/device/KINDS.md as read on 2026-11-17 (torch 2.11,
onnx 1.23, onnxscript, onnxruntime 1.30 CPU-only, numpy, matplotlib, pytest-benchmark, pyyaml, tqdm,
hypothesis, grpcio, prometheus-client, uvloop, ...; no registry to install more)."""

import sys

BLOCKED = ("tritonclient", "uvicorn", "httptools", "orjson", "openvino", "playwright")


class BlockMissing:
    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            self.attempts.append(name)
            raise ImportError(f"{name.split('.')[0]} is not on the GPU machine (tests/device_env blocks it)")


BLOCKER = BlockMissing()
sys.meta_path.insert(0, BLOCKER)
