"""The design documents in docs/ are what the code cites: every ``docs/<file>.md, "<Heading>"`` in
the package, the benchmarks and the tests names a file that exists and a heading it has, and no
source file cites a document outside the repository."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

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


# --- the README: one page, links that resolve, commands that parse --------------------------------

README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
LINK = re.compile(r'\[[^\]]*\]\(([^)\s]+)\)|<img\s[^>]*src="([^"]+)"')
SECTION_CITE = re.compile(r'\]\(([^)\s#]+\.md)\),?\s+"([^"]+)"')


def prose(page: Path) -> str:
    """The page without its fenced code blocks (a link in a code sample is not a link)."""
    return FENCE.sub("", page.read_text())


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_the_readme_is_one_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move the details to a docs/ page"


def test_every_link_and_image_resolves():
    """Every relative link and image of the README and of docs/*.md names a file that exists, every
    #anchor a heading of its page, and every link followed by ', "Heading"' a heading of that page."""
    checked = 0
    for page in PAGES:
        text = prose(page)
        for match in LINK.finditer(text):
            target = match.group(1) or match.group(2)
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, frag = target.partition("#")
            doc = (page.parent / path).resolve() if path else page
            where = f"{page.relative_to(ROOT)} links {target!r}"
            assert doc.exists(), f"{where}: no such file"
            if frag:
                assert frag in {anchor(h) for h in headings(doc)}, f"{where}: {doc.name} has no such heading"
            checked += 1
        for match in SECTION_CITE.finditer(text):
            doc = (page.parent / match.group(1)).resolve()
            heading = " ".join(match.group(2).split())
            assert heading in headings(doc), f"{page.relative_to(ROOT)}: {doc.name} lacks heading {heading!r}"
    assert checked >= 20


def test_the_readme_links_every_docs_page():
    linked = {m.group(1) for m in re.finditer(r"\]\(docs/([\w-]+\.md)\)", README.read_text())}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} | {"cli.md"}
    assert pages <= linked, f"docs pages the README does not link: {sorted(pages - linked)}"


def readme_commands() -> list[str]:
    """Each ``ssgan …``, ``python train.py …`` and ``torchrun … train.py …`` command of the README's
    bash blocks, continuation lines joined, one per ``&&`` part."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```", README.read_text(), re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words[:1] == ["ssgan"] or "train.py" in words:
                    out.append(" ".join(shlex.quote(w) for w in words))
    return out


def test_the_tour_is_a_dozen_commands():
    assert 12 <= len(readme_commands()) <= 25


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_command_parses(command, capsys):
    """The command's arguments parse with the ``ssgan`` parser (``python train.py`` and ``torchrun …
    train.py`` as ``ssgan train``), nothing runs, and no spelling in it is a deprecated one."""
    from ssgan import cli

    words = shlex.split(command)
    argv = words[1:] if words[0] == "ssgan" else ["train", *words[words.index("train.py") + 1:]]
    try:
        cli.build_parser().parse_args(argv)
    except (SystemExit, cli.CLIError) as e:  # the parser reports bad arguments one way or the other
        pytest.fail(f"README: {command!r} does not parse: {e} {capsys.readouterr().err.strip()}")
    err = capsys.readouterr().err
    assert "deprecated" not in err, f"README: {command!r} uses an old spelling: {err.strip()}"


def test_the_readme_layout_names_what_exists():
    """Each path of the README's layout block is a folder (``name/``) or a file of the repository."""
    readme = README.read_text()
    block = readme[readme.index("## Layout"):]
    block = re.search(r"```text\n(.*?)```", block, re.S).group(1)
    paths = [line.split()[0] for line in block.splitlines() if line.strip()]
    assert len(paths) >= 10
    for path in paths:
        target = ROOT / path
        assert (target.is_dir() if path.endswith("/") else target.is_file()), f"README layout: no {path}"
    folders = {p.name for p in (ROOT / "ssgan").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert {f"ssgan/{f}/" for f in folders} <= set(paths), "README layout: a ssgan/ folder is missing"
