"""The design documents in docs/ are what the code cites: every ``docs/<file>.md, "<Heading>"`` in
the package, the benchmarks and the tests names a file that exists and a heading it has, and no
source file cites a document outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITATION = re.compile(r'docs/([\w-]+\.md)((?:[\s,(]*(?:to|and)?\s*"[^"\n]+")*)')
SOURCES = [*(p for d in ("ssgan", "bench", "tests") for p in sorted((ROOT / d).rglob("*.py"))),
           ROOT / "train.py"]


def headings(doc: Path) -> set[str]:
    return {line.lstrip("#").strip() for line in doc.read_text().splitlines() if line.startswith("#")}


def test_every_docs_citation_resolves():
    cited = 0
    for path in SOURCES:
        for match in CITATION.finditer(path.read_text()):
            doc = ROOT / "docs" / match.group(1)
            where = f"{path.relative_to(ROOT)} cites {match.group(0)!r}"
            assert doc.is_file(), f"{where}: no {doc.relative_to(ROOT)}"
            for heading in re.findall(r'"([^"\n]+)"', match.group(2)):
                assert heading in headings(doc), f"{where}: {doc.name} has no heading {heading!r}"
                cited += 1
    assert cited >= 8  # the package cites sections, not just files


def test_the_subpackages_documents_exist():
    for name in ("model.md", "training.md", "editing.md", "checkpoints.md"):
        doc = ROOT / "docs" / name
        assert doc.is_file() and len(headings(doc)) >= 4, doc


def test_no_citation_of_a_document_outside_the_repository():
    bad = [str(p.relative_to(ROOT)) for p in SOURCES if p != Path(__file__) and "SPEC.md" in p.read_text()]
    assert not bad, bad
