"""Put this folder first on PYTHONPATH and Python imports this file at start-up: from then on any
import of torch or torchvision raises ImportError and is recorded in BLOCKER.attempts. Tests run
torch-free code (deploy/, the shared helpers) in such a subprocess to prove it needs no torch."""

import sys

BLOCKED = ("torch", "torchvision")


class BlockTorch:
    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            self.attempts.append(name)
            raise ImportError(f"torch is blocked in this test: {name}")


BLOCKER = BlockTorch()
sys.meta_path.insert(0, BLOCKER)
