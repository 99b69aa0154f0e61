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

from handoff.artifacts import MADE_BY, MANIFEST
from handoff.atomic import write_json
from handoff.digest import sha256_file
from handoff.errors import PipelineError
from handoff.lock import exclusive_lock


def read_manifest(out: Path, remedy: str = "`make clean`, then `make train export`") -> dict[str, Any]:
    """The folder's manifest ({"artifacts": {}} when there is none yet). An unreadable one names
    `remedy`, the commands that write the folder again (for a bundle: remove it, then `make deploy`)."""
    path = Path(out) / MANIFEST
    if not path.exists():
        return {"artifacts": {}}
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise PipelineError(f"{path}: unreadable ({err}); its files cannot be trusted: run {remedy}") from err
    manifest.setdefault("artifacts", {})
    return manifest


def record(out: Path, names: list[str], produced_by: str, replacing: str | None = None,
           dropping: list[str] = (), **sections: Any) -> None:
    """Add (or replace) the entries for `names`, written by `produced_by`, and any top-level sections.
    `replacing` (a folder, e.g. "web/") drops the entries under it first: the stage rewrote the folder
    whole; `dropping` drops the entries of files the stage no longer writes (and has removed)."""
    out = Path(out)
    with exclusive_lock(out / ".manifest.lock", "manifest update", wait=True):  # read-modify-write
        manifest = read_manifest(out)
        if replacing:
            manifest["artifacts"] = {k: v for k, v in manifest["artifacts"].items() if not k.startswith(replacing)}
        for name in dropping:
            manifest["artifacts"].pop(name, None)
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


def verify(out: Path, names: list[str], remedy: str | None = None) -> dict[str, str]:
    """Refuse any of `names` that is missing, unrecorded, or not the file its producer recorded;
    returns name -> sha256 of the files as verified. Each refusal says what makes the file again:
    `remedy` (e.g. a bundle's "remove … and run `make deploy`"), else the command artifacts.MADE_BY
    names, after deleting the file Make would otherwise take as up to date."""
    out = Path(out)
    entries = read_manifest(out)["artifacts"]
    digests = {}
    for name in names:
        path, command = out / name, MADE_BY.get(name, "the stage that writes it")
        if not path.exists():
            raise PipelineError(f"{path}: not found; {remedy or f'run `{command}`'}")
        entry = entries.get(name)
        rebuild = remedy or f"delete it and run `{command}`"
        if entry is None:
            raise PipelineError(f"{path}: not recorded in {out / MANIFEST}, so not written by this pipeline: {rebuild}")
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            raise PipelineError(
                f"{path}: sha256 {digest[:16]}… does not match {MANIFEST} ({entry['sha256'][:16]}…, "
                f"written by `{entry['produced_by']}`); the file changed since: {rebuild}"
            )
        digests[name] = digest
    return digests
