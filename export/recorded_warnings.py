"""Record the warnings a library raises (TorchScript's deprecation, exporter notes) for a report,
and still show each one on stderr, so nothing is hidden and nothing is fatal."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def recording_warnings() -> Iterator[list[dict[str, str]]]:
    """Yield a list that, once the block ends, holds every warning raised inside it."""
    entries: list[dict[str, str]] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield entries
    for w in caught:
        entries.append({"category": w.category.__name__, "message": str(w.message), "source": f"{w.filename}:{w.lineno}"})
        warnings.showwarning(w.message, w.category, w.filename, w.lineno)
