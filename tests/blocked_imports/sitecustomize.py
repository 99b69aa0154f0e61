"""Put this folder first on PYTHONPATH and Python imports this file at start-up: from then on any
import of a top-level package named in $BLOCKED_IMPORTS (comma-separated) raises ImportError, with
$BLOCKED_REASON, and is recorded in BLOCKER.attempts. tests/conftest.py's `blocked_imports` sets both:
torch-free code (deploy/, the shared helpers) runs without torch, and the GPU check's dry run
without the packages the lent GPU machine lacks."""

import os
import sys

BLOCKED = tuple(name for name in os.environ.get("BLOCKED_IMPORTS", "").split(",") if name)
REASON = os.environ.get("BLOCKED_REASON", "blocked in this test")


class BlockImports:
    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            self.attempts.append(name)
            raise ImportError(f"{name.split('.')[0]}: {REASON}")


BLOCKER = BlockImports()
sys.meta_path.insert(0, BLOCKER)
