"""Which package may import which, read from every import statement with `ast` (the reader the
Makefile uses for its dependencies, pipeline.handoff.sources), so an import added anywhere in a
file, even inside a function that no test calls, is checked.

  pipeline/handoff/  the torch-free hand-off: imports nothing of the project but itself
  deploy/            imports deploy and pipeline.handoff, nothing else of the project
  both               never torch or torchvision
  everyone           no private name (`_name`) from another package
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import REPO
from pipeline.handoff.sources import PACKAGES, imports, module_file

TORCH = ("torch", "torchvision")
ALLOWED = {  # folder -> the project packages its modules may import
    "pipeline/handoff": ("pipeline.handoff",),
    "deploy": ("deploy", "pipeline.handoff"),
}


def project_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def forbidden_imports(path: Path, allowed: tuple[str, ...]) -> list[str]:
    """`file:line: module` for each import of torch, or of a project module outside `allowed`."""
    found = []
    for line, module in imports(path):
        outside = module_file(module) is not None and not any(module == a or module.startswith(a + ".") for a in allowed)
        if module.split(".")[0] in TORCH or outside:
            found.append(f"{_shown(path)}:{line}: {module}")
    return found


def _shown(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


@pytest.mark.parametrize("folder", sorted(ALLOWED))
def test_torch_free_packages_import_only_what_they_may(folder):
    bad = [hit for path in sorted((REPO / folder).glob("*.py")) for hit in forbidden_imports(path, ALLOWED[folder])]
    assert bad == [], f"{folder}/ may import only {', '.join(ALLOWED[folder])} of the project, and never torch"


def test_the_check_sees_an_import_hidden_in_a_function(tmp_path):
    """An oracle for the check itself: a deploy-like file importing training code, and torch, inside a function."""
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("from pipeline.handoff import artifacts\n\ndef f():\n    from pipeline.train import train\n"
                      "    import torch.nn\n    return train\n")
    assert forbidden_imports(sneaky, ALLOWED["deploy"]) == [f"{sneaky}:4: pipeline.train", f"{sneaky}:5: torch.nn"]


def _package_of(module: str) -> str:
    return module if module_file(module).name == "__init__.py" else module.rsplit(".", 1)[0]


def test_no_private_name_is_imported_from_another_package():
    bad = []
    for path in project_files():
        package = ".".join(path.relative_to(REPO).parts[:-1])
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and module_file(node.module):
                if _package_of(node.module) != package:
                    bad += [f"{path.relative_to(REPO)}:{node.lineno}: {node.module}.{a.name}"
                            for a in node.names if a.name.startswith("_")]
    assert bad == []
