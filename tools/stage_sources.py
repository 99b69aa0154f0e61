"""Which source files each stage is built from: the import closure of its programs, read with
`ast` (nothing is imported or run). The Makefile asks for these lists when it is read, so editing
a module re-runs exactly the stages whose programs import it; tests/test_imports.py reads imports
with the same functions to check which folder may import which. A tool the Makefile runs, not a
hand-off between stages: it imports nothing of the project.

Usage (standard library only, any python3; prints, writes nothing):
    python3 tools/stage_sources.py train=pipeline/train.py bench=bench/suites/conftest.py,bench/suites/test_*.py
    -> train:pipeline/__init__.py train:pipeline/train.py ... bench:bench/suites/conftest.py ...
"""

from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path

PACKAGES = ("handoff", "pipeline", "export", "deploy", "web", "bench", "tools")  # the project's own top-level packages
REPO = Path(__file__).resolve().parents[1]


@functools.cache
def module_file(module: str) -> Path | None:
    """The file that defines `module` (a module or a package) if it is the project's, else None."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return None
    for candidate in (REPO.joinpath(*parts).with_suffix(".py"), REPO.joinpath(*parts, "__init__.py")):
        if candidate.is_file():
            return candidate
    return None


@functools.cache  # each file is parsed once per run, whichever stages' closures share it
def imports(path: Path) -> tuple[tuple[int, str], ...]:
    """(line, module) for every import in the file, at any depth (function bodies included).
    `from a import b` gives `a.b` where that is a project module (`from export import backends`),
    else `a` (`from a import function`)."""
    found = []
    for node in ast.walk(ast.parse(Path(path).read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            submodules = [f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}")]
            found += [(node.lineno, name) for name in submodules or [node.module]]
    return tuple(sorted(found))


def _with_packages(module: str) -> list[str]:
    """`a.b.c` -> a, a.b, a.b.c: importing a module runs every package __init__ above it."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _packages_of(program: Path) -> list[Path]:
    """The package __init__ files Python runs before `program` (as `python -m` or an import does)."""
    relative = program.relative_to(REPO).with_suffix("")
    return [f for m in _with_packages(".".join(relative.parts[:-1])) if m and (f := module_file(m)) is not None]


def closure(programs: list[Path]) -> list[Path]:
    """Every project file the programs import, directly or not, the programs (and their packages) included."""
    seen: set[Path] = set()
    todo = [f for p in programs for f in (Path(p).resolve(), *_packages_of(Path(p).resolve()))]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for _, module in imports(path):
            todo += [f for m in _with_packages(module) if (f := module_file(m)) is not None]
    return sorted(seen)


def stage_sources(spec: str) -> list[str]:
    """`stage=glob,glob,...` -> ["stage:relative/path.py", ...] for the closure of the matching files."""
    stage, _, patterns = spec.partition("=")
    programs = [p for pattern in patterns.split(",") for p in sorted(REPO.glob(pattern))]
    if not programs:
        raise SystemExit(f"sources.py: {spec!r} matches no file under {REPO}")
    return [f"{stage}:{path.relative_to(REPO)}" for path in closure(programs)]


if __name__ == "__main__":
    print(" ".join(word for spec in sys.argv[1:] for word in stage_sources(spec)))
