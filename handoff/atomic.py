"""Atomic writes: a reader sees the old file (or folder) or the complete new one, never a partial one."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from handoff.errors import PipelineError


@contextmanager
def atomic_path(path: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside `path` (ending in `suffix`: some writers insist on their
    extension); on success fsync it and rename it over `path`.

    On any error the temporary file is removed and `path` is left as it was; an OSError (disk
    full, permissions) becomes a one-line PipelineError naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    except OSError as err:
        raise PipelineError(f"{path}: cannot write ({err.strerror or err})") from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        yield tmp
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except OSError as err:
        raise PipelineError(f"{path}: cannot write ({err.strerror or err}); the previous file is kept") from err
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: Path, obj: Any) -> None:
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def ensure_writable(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be written there, before any work starts."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test."):
            pass
    except OSError as err:
        raise PipelineError(f"{folder}: not writable ({err.strerror or err})") from err


def replace_folder(built: Path, target: Path) -> None:
    """Swap the finished folder `built` in as `target` (same filesystem): a reader sees the old
    folder or the new one, never a mix."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old."))
        target.rename(old / target.name)
    built.rename(target)
    if old is not None:
        shutil.rmtree(old)
