"""The docs a newcomer reads hold together: every link between them lands on a file and a heading that
exist, and the table of Make variables lists every variable the Makefile has."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped (not - or _), spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+)$", re.sub(r"```.*?```", "", path.read_text(), flags=re.S), flags=re.M)
    return {slug(h) for h in headings}


def test_the_slug_is_githubs():
    """An oracle: anchors GitHub gives these headings (read off rendered pages)."""
    assert slug("Precision (`PRECISION=auto|bfloat16|off`), decided once by the hardware") == \
        "precision-precisionautobfloat16off-decided-once-by-the-hardware"
    assert slug("The GPU check (`bench/gpu_check.sh`)") == "the-gpu-check-benchgpu_checksh"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_lands_on_a_file_and_a_heading(doc):
    broken = []
    for target in LINK.findall(doc.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with anchor #{anchor} in {path.name}")
    assert broken == []


def test_the_variables_table_lists_every_make_variable():
    variables = set(re.findall(r"^([A-Z_][A-Z0-9_]*) \?=", (REPO / "Makefile").read_text(), flags=re.M))
    variables |= set(re.findall(r"^([A-Z_][A-Z0-9_]*) \?=", (REPO / "bench/serve/peers/peers.mk").read_text(), flags=re.M))
    table = (REPO / "docs" / "training.md").read_text().split("## Make variables", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([A-Z_][A-Z0-9_]*)`", table))
    assert variables <= listed, sorted(variables - listed)
