"""The house's rules, read from every import statement with `ast` (the reader the Makefile uses for
its dependencies, tools/stage_sources.py), so an import added anywhere in a file, even inside a
function that no test calls, is checked:

  pipeline → handoff ← export, deploy, web, bench    each folder imports only the folders RULES names
  handoff, deploy, web, tools                         never torch or torchvision (TORCH_FREE)
  deploy/build, deploy/predict, deploy/serve          rooms: each imports deploy's shared modules, never another room
  the whole house                                     no import circle
  everyone                                            no private name (`_name`) from another package
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

from conftest import REPO
from tools.stage_sources import PACKAGES, imports, module_file

RULES = {  # folder -> the other project folders its modules may import
    "handoff": (),  # the torch-free contract every stage shares
    "tools": (),  # what only the Makefile runs: the standard library alone
    "pipeline": ("handoff",),
    "export": ("pipeline", "handoff"),
    "deploy": ("handoff",),
    "web": ("deploy", "handoff"),  # a stage after deploy, shipped inside the torch-free bundle
    "bench": ("export", "pipeline", "deploy", "handoff"),
}
TORCH_FREE = ("handoff", "deploy", "web", "tools")
TORCH = ("torch", "torchvision")
ROOMS = {"deploy": ("build", "predict", "serve")}  # folder -> its rooms


def files_of(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def forbidden_imports(path: Path, folder: str, where: Path | None = None) -> list[str]:
    """`file:line: module` for each import of a project folder RULES does not give `folder`, of
    torch in a torch-free folder, or of another room of the same folder. `where`: judge the file
    as if it stood there (default: where it is)."""
    allowed = (folder, *RULES[folder])
    room = _room_of(where or path, folder)
    found = []
    for line, module in imports(path):
        top = module.split(".")[0]
        outside = module_file(module) is not None and top not in allowed
        torch = top in TORCH and folder in TORCH_FREE
        other_room = room is not None and _room_of_module(module, folder) not in (None, room)
        if outside or torch or other_room:
            found.append(f"{_shown(path)}:{line}: {module}")
    return found


def _room_of(path: Path, folder: str) -> str | None:
    parts = path.relative_to(REPO / folder).parts if path.is_relative_to(REPO / folder) else ()
    return parts[0] if len(parts) > 1 and parts[0] in ROOMS.get(folder, ()) else None


def _room_of_module(module: str, folder: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == folder and len(parts) > 1 and parts[1] in ROOMS.get(folder, ()) else None


def _shown(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def test_every_project_folder_has_a_rule():
    assert set(RULES) == set(PACKAGES), "a new top-level folder needs its rule here"


@pytest.mark.parametrize("folder", sorted(RULES))
def test_each_folder_imports_only_what_its_rule_allows(folder):
    bad = [hit for path in files_of(folder) for hit in forbidden_imports(path, folder)]
    allowed = ", ".join(RULES[folder]) or "nothing of the project"
    assert bad == [], f"{folder}/ may import {allowed} (and itself{', never torch' if folder in TORCH_FREE else ''})"


def test_the_check_sees_an_import_hidden_in_a_function(tmp_path):
    """An oracle for the check itself: a server-room file importing training code, torch and
    another room, the two last inside a function."""
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("from handoff import artifacts\nfrom pipeline.train import train\n\ndef f():\n"
                      "    import torch.nn\n    from deploy.build import model_card\n    return train\n")
    found = forbidden_imports(sneaky, "deploy", where=REPO / "deploy" / "serve" / "sneaky.py")
    assert found == [f"{sneaky}:2: pipeline.train", f"{sneaky}:5: torch.nn", f"{sneaky}:6: deploy.build.model_card"]


def import_graph() -> dict[str, set[str]]:
    """file -> the project files it imports (any depth: function bodies too)."""
    graph = {}
    for folder in PACKAGES:
        for path in files_of(folder):
            targets = {module_file(module) for _, module in imports(path)} - {None, path}
            graph[str(_shown(path))] = {str(_shown(t)) for t in targets}
    return graph


def test_no_import_circle_in_the_house():
    try:
        graphlib.TopologicalSorter(import_graph()).prepare()
    except graphlib.CycleError as err:
        pytest.fail(f"an import circle: {' -> '.join(err.args[1])}")


def test_the_circle_check_sees_a_circle():
    """Its oracle: two files importing each other."""
    graph = {"a.py": {"b.py"}, "b.py": {"a.py"}}
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(graph).prepare()


def _package_of(module: str) -> str:
    return module if module_file(module).name == "__init__.py" else module.rsplit(".", 1)[0]


def test_no_private_name_is_imported_from_another_package():
    bad = []
    for folder in PACKAGES:
        for path in files_of(folder):
            package = ".".join(path.relative_to(REPO).parts[:-1])
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and module_file(node.module):
                    if _package_of(node.module) != package:
                        bad += [f"{path.relative_to(REPO)}:{node.lineno}: {node.module}.{a.name}"
                                for a in node.names if a.name.startswith("_")]
    assert bad == []
