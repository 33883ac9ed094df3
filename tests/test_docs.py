"""The README and docs/ stay navigable: every relative link reaches a file (and a heading, where it names
one), and every benchmark result file they quote by name is in bench/results/."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
RESULT_FILE = re.compile(r"\b[a-z][a-z0-9-]*-20\d{6}-\d{6}\.(?:json|png)\b")


def prose_lines(text: str):
    """The lines outside fenced code blocks (a shell comment there is not a heading)."""
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            yield line


def anchors(page: Path) -> set[str]:
    """GitHub's anchor for each heading: lower case, punctuation dropped, spaces to hyphens."""
    headings = [line.lstrip("#").strip() for line in prose_lines(page.read_text()) if re.match(r"#{1,6} ", line)]
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_the_anchor_of_a_heading_is_githubs():
    assert "how-well-it-tags-and-how-fast" in anchors(ROOT / "README.md")
    assert "catalogue-page-catalogue" in anchors(ROOT / "README.md")  # "Catalogue page: `/catalogue`"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_reach_a_file_and_heading(page):
    broken = []
    for target in LINK.findall("\n".join(prose_lines(page.read_text()))):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_quoted_result_files_exist(page):
    quoted = set(RESULT_FILE.findall(page.read_text()))
    missing = sorted(name for name in quoted if not (ROOT / "bench" / "results" / name).exists())
    assert not missing
