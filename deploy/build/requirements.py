"""The bundle's requirements.txt: the torch-free serving dependencies, read from the installed
distribution's `deploy` extra (pyproject.toml's list, in an editable install and a wheel alike)."""

from __future__ import annotations

import importlib.metadata

from handoff.errors import PipelineError

DISTRIBUTION = "mnist-pipeline"  # pyproject.toml's [project] name: its `deploy` extra is requirements.txt
DEPLOY_EXTRA = 'extra == "deploy"'


def requirements() -> list[str]:
    """The `deploy` extra of the installed distribution, its own markers kept, the extra's dropped.

    Read from the installed metadata (importlib.metadata), so it is pyproject.toml's list in an
    editable install and a wheel alike. Our markers are `A and extra == "deploy"` at most, so
    dropping that one clause is exact.
    """
    try:
        specs = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as err:
        raise PipelineError(f"{DISTRIBUTION} is not installed (`make setup`); its metadata lists the deploy requirements") from err
    lines = []
    for spec in specs:
        requirement, _, marker = (part.strip() for part in spec.partition(";"))
        clauses = [c.strip() for c in marker.split(" and ")] if marker else []
        if DEPLOY_EXTRA in clauses:
            rest = [c for c in clauses if c != DEPLOY_EXTRA]
            lines.append(requirement + (f"; {' and '.join(rest)}" if rest else ""))
    if not lines:
        raise PipelineError(f"{DISTRIBUTION}'s metadata has no `deploy` extra; reinstall it (`make setup`)")
    return lines


def requirements_txt() -> str:
    return ("# Serving dependencies (no torch), pinned as in pyproject.toml's `deploy` extra\n"
            + "\n".join(requirements()) + "\n")
