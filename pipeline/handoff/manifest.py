"""`manifest.json`: the hand-off between stages. Each stage records the sha256 of what it wrote;
each stage checks the sha256 of what it reads, so a file changed, truncated or swapped after its
producer finished is refused instead of consumed.

    {"artifacts": {"model.pt": {"sha256": ..., "bytes": ..., "produced_by": "python -m pipeline.train"}, ...},
     ...sections added by later stages (config, versions, parity verdict)}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pipeline.handoff.artifacts import MANIFEST
from pipeline.handoff.atomic import write_json
from pipeline.handoff.digest import sha256_file
from pipeline.handoff.errors import PipelineError
from pipeline.handoff.lock import exclusive_lock


def read_manifest(out: Path) -> dict[str, Any]:
    path = Path(out) / MANIFEST
    if not path.exists():
        return {"artifacts": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PipelineError(f"{path}: unreadable ({err}); delete it and re-run `make train`") from err
    manifest.setdefault("artifacts", {})
    return manifest


def record(out: Path, names: list[str], produced_by: str, replacing: str | None = None, **sections: Any) -> None:
    """Add (or replace) the entries for `names`, written by `produced_by`, and any top-level sections.
    `replacing` (a folder, e.g. "web/") drops the entries under it first: the stage rewrote the folder whole."""
    out = Path(out)
    with exclusive_lock(out / ".manifest.lock", "manifest update", wait=True):  # read-modify-write
        manifest = read_manifest(out)
        if replacing:
            manifest["artifacts"] = {k: v for k, v in manifest["artifacts"].items() if not k.startswith(replacing)}
        manifest["artifacts"].update(file_entries(out, names, produced_by))
        manifest.update(sections)
        write_json(out / MANIFEST, manifest)


def file_entries(out: Path, names: list[str], produced_by: str) -> dict[str, dict[str, Any]]:
    """name -> {sha256, bytes, produced_by} for files under `out`: the "artifacts" section."""
    entries = {}
    for name in names:
        path = Path(out) / name
        entries[name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size, "produced_by": produced_by}
    return entries


def verify(out: Path, names: list[str]) -> dict[str, str]:
    """Refuse any of `names` that is missing, unrecorded, or not the file its producer recorded;
    returns name -> sha256 of the files as verified."""
    out = Path(out)
    entries = read_manifest(out)["artifacts"]
    digests = {}
    for name in names:
        path = out / name
        if not path.exists():
            raise PipelineError(f"{path}: not found; run the stage that makes it (`make train export`)")
        entry = entries.get(name)
        if entry is None:
            raise PipelineError(f"{path}: not recorded in {out / MANIFEST}; it was not written by this pipeline")
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise PipelineError(
                f"{path}: sha256 {digest[:16]}… does not match {MANIFEST} ({entry['sha256'][:16]}…, "
                f"written by `{entry['produced_by']}`); the file changed since, re-run that stage"
            )
        digests[name] = digest
    return digests
