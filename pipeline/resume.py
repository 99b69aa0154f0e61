"""Per-epoch training checkpoints in `<artifacts>/checkpoints/`, and resuming from the last one.

A checkpoint holds everything the next epoch depends on — model, optimizer and scheduler state,
the shuffling generator and torch's RNG — so a resumed CPU run ends with weights identical to an
uninterrupted one. It also holds a fingerprint of what produced it (recipe, seed, device type and
the training code); resuming under a different fingerprint is refused, never mixed.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import torch

from handoff.atomic import atomic_path
from handoff.errors import PipelineError
from pipeline.checkpoint import load_plain

FORMAT = "mnist-pipeline/train-state-v1"
KEEP = 2  # checkpoints kept: the newest is enough to resume, one more in case it is unreadable
REPO = Path(__file__).resolve().parents[1]
TRAINING_CODE = ("pipeline", "handoff")  # the training stage and the hand-off it imports
_NAME = re.compile(r"^epoch-(\d{3,})\.pt$")


def code_digest() -> str:
    """sha256 over the training code (every module of `pipeline` and `handoff`): a checkpoint from
    other code is stale. A superset of what `make train` depends on, so it can only refuse more."""
    digest = hashlib.sha256()
    for path in sorted(p for package in TRAINING_CODE for p in (REPO / package).rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints, oldest first (temporary files from an interrupted write are ignored)."""
    found = [p for p in Path(folder).glob("epoch-*.pt") if _NAME.match(p.name)]
    return sorted(found, key=lambda p: int(_NAME.match(p.name).group(1)))


def save_state(folder: Path, epoch: int, state: dict[str, Any]) -> Path:
    path = Path(folder) / f"epoch-{epoch:03d}.pt"
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "epoch": epoch, **state}, tmp)
    for old in checkpoints(folder)[:-KEEP]:
        old.unlink()
    return path


def load_latest(folder: Path, fingerprint: dict[str, Any]) -> tuple[Path, dict[str, Any]] | None:
    """(path, state) of the newest checkpoint if there is one; refuses one from another fingerprint."""
    found = checkpoints(folder)
    if not found:
        return None
    path = found[-1]
    state = load_plain(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PipelineError(f"{path}: not a {FORMAT} checkpoint; delete {folder} to start over")
    if state["fingerprint"] != fingerprint:
        differs = sorted(k for k in fingerprint if state["fingerprint"].get(k) != fingerprint[k])
        raise PipelineError(
            f"{path}: written by a different run ({', '.join(differs)} differ); "
            f"delete {folder} to start over, or use another ARTIFACTS"
        )
    return path, state


def remove_partial_writes(*folders: Path) -> None:
    """Delete temporary files an interrupted atomic write left behind (no stage ever reads them)."""
    for folder in folders:
        for tmp in Path(folder).glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def snapshot(model, optimizer, scheduler, shuffle, history, train_seconds) -> dict:
    """Everything the next epoch depends on, for `save_state`."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "shuffle_rng": shuffle.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": history,
        "train_seconds": train_seconds,
    }


def restore(state: dict, model, optimizer, scheduler, shuffle) -> None:
    """Put a `snapshot` back into the live objects."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(state["scheduler"])
    shuffle.set_state(state["shuffle_rng"])
    torch.set_rng_state(state["torch_rng"])
