"""The project documents itself: its docs live in docs/, and every pointer to them resolves.

Three checks over the repository as it is:

- no file points outside the repository for its design or its interfaces (planning notes that
  were never part of it): the project's own pages under docs/ say those things;
- every Markdown link in README.md and docs/*.md leads to a file that exists, and to a heading
  of it when the link names one;
- every ``docs/NAME.md`` that code, tests or pyproject.toml cite exists, and when the citation
  names a section (``docs/database.md, "Tables"``), the page has a heading starting with it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED_DIRS = ("src", "tests", "bench", "scripts", "docs")
SCANNED_FILES = ("pyproject.toml", "README.md")
SKIPPED_SUFFIXES = {".pyc", ".png", ".ico", ".woff", ".woff2", ".gz", ".zst", ".sqlite"}

# Built from pieces so that this file does not match itself.
_OUTSIDE = re.compile(
    "|".join(
        [
            r"\b" + "DESIGN" + r"\.md\b",
            r"\b" + "STYLE" + r"\.md\b",
            r"\b" + "TESTING" + r"\.md\b",
            r"(?<![\w/.-])" + "spec" + r"/[\w-]+\.md\b",
            r"\.\./" + r"shared\b",
            r"/work/" + r"shared\b",
            r"\b" + "[Ss]pec" + r" sections? \d",
            r"\(" + "spec" + r" \d",
        ]
    )
)
_MD_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
_CITATION = re.compile(r"\bdocs/([\w-]+\.md)(?:, \"([^\"]+)\")?")


def scanned_files(root: Path) -> list[Path]:
    found = [root / name for name in SCANNED_FILES if (root / name).is_file()]
    for top in SCANNED_DIRS:
        base = root / top
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*")):
            if (
                path.is_file()
                and "__pycache__" not in path.parts
                and path.suffix not in SKIPPED_SUFFIXES
            ):
                found.append(path)
    return found


def read_text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def outside_references(root: Path) -> list[str]:
    """``file:line: text`` for every reference to notes kept outside the repository."""
    problems = []
    for path in scanned_files(root):
        for number, line in enumerate(read_text(path).splitlines(), start=1):
            if _OUTSIDE.search(line):
                problems.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return problems


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as dashes."""
    text = re.sub(r"[`*_]", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(markdown: str) -> list[str]:
    return _HEADING.findall(_FENCE.sub("", markdown))


def anchors(markdown: str) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in headings(markdown):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def broken_links(root: Path) -> list[str]:
    """Markdown links in README.md and docs/*.md whose file or heading does not exist."""
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    problems = []
    for page in pages:
        if not page.is_file():
            continue
        for target in _MD_LINK.findall(_FENCE.sub("", read_text(page))):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, mailto:, ...
                continue
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            where = f"{page.relative_to(root)}: ({target})"
            if not dest.exists():
                problems.append(f"{where}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(read_text(dest)):
                problems.append(f"{where}: no heading with the anchor #{anchor}")
    return problems


def broken_citations(root: Path) -> list[str]:
    """``docs/NAME.md`` (and ``, "Section"``) cited outside docs/ that leads nowhere."""
    problems = []
    for path in scanned_files(root):
        # the pages cite each other by links, checked above; this file cites planted pages
        if path.parent == root / "docs" or path == root / "tests" / "test_docs.py":
            continue
        text = read_text(path)
        for match in _CITATION.finditer(text):
            page = root / "docs" / match[1]
            where = f"{path.relative_to(root)}: {match[0]!r}"
            if not page.is_file():
                problems.append(f"{where}: no such page")
                continue
            if match[2] is None:
                continue
            section = " ".join(match[2].split())
            if not any(h.startswith(section) for h in headings(read_text(page))):
                problems.append(f"{where}: {match[1]} has no heading starting {section!r}")
    return problems


# -- the repository -----------------------------------------------------------------------------


def test_nothing_points_outside_the_repository() -> None:
    assert outside_references(ROOT) == []


def test_links_in_readme_and_docs_resolve() -> None:
    assert broken_links(ROOT) == []


def test_docs_cited_by_code_exist() -> None:
    assert broken_citations(ROOT) == []


_REPO_PATH = re.compile(r"`((?:tests|src|docs|bench)/[\w/.-]+\.(?:py|md))`")


def missing_shown_paths(page: Path, root: Path) -> list[str]:
    """Repository paths a page quotes (```tests/...py``` and the like) that do not exist."""
    return [p for p in _REPO_PATH.findall(read_text(page)) if not (root / p).is_file()]


def test_divergences_point_at_files_that_exist_and_are_linked() -> None:
    """docs/divergences.md says where each difference is shown: every test file it names
    exists (its links are checked above), and the pages a moving site reads first link to it."""
    page = ROOT / "docs" / "divergences.md"
    assert len(_REPO_PATH.findall(read_text(page))) >= 10  # it names the tests, not only pages
    assert missing_shown_paths(page, ROOT) == []
    assert "(docs/divergences.md)" in read_text(ROOT / "README.md")
    assert "(divergences.md)" in read_text(ROOT / "docs" / "moving-from-buildbot.md")


def test_a_quoted_path_that_is_gone_is_found(tmp_path: Path) -> None:
    _plant(tmp_path, {"tests/test_a.py": "", "d.md": "`tests/test_a.py`, `tests/e2e/gone.py`\n"})
    assert missing_shown_paths(tmp_path / "d.md", tmp_path) == ["tests/e2e/gone.py"]


@pytest.mark.parametrize(
    "page", ["architecture.md", "worker-protocol.md", "rest-api.md", "database.md"]
)
def test_interface_pages_exist_and_readme_points_to_them(page: str) -> None:
    assert (ROOT / "docs" / page).is_file()
    assert f"docs/{page}" in read_text(ROOT / "README.md")


# -- the checks themselves, on a planted repository ---------------------------------------------


def _plant(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    "line",
    [
        "# see " + "DESIGN" + ".md 4.4",
        "as " + "STYLE" + ".md says",
        '"""The claims (' + "spec" + '/database.md section 4)."""',
        "cat ../" + "shared/notes.txt",
        "# " + "spec" + " section 1: the order",
        "(" + "spec" + " 5.5)",
    ],
)
def test_a_reference_outside_is_found(tmp_path: Path, line: str) -> None:
    _plant(tmp_path, {"src/pkg/mod.py": f"x = 1\n{line}\n", "README.md": "fine\n"})
    assert outside_references(tmp_path) == [f"src/pkg/mod.py:2: {line.strip()}"]


def test_ordinary_words_are_not_references(tmp_path: Path) -> None:
    text = "spec = parse_spec(text)\nresult_spec.md_table()\nthe resultspec/x.md file\n"
    _plant(tmp_path, {"src/pkg/mod.py": text, "tests/data/specs.json": "{}"})
    assert outside_references(tmp_path) == []


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "README.md": "[a](docs/a.md) [gone](docs/gone.md) [b](docs/a.md#the-queue)\n",
            "docs/a.md": "# A\n\n## The queue\n\n[self](#a) [bad](#nothing) [up](../README.md)\n"
            "```\n[not a link](nowhere.md)\n```\n",
        },
    )
    assert broken_links(tmp_path) == [
        "README.md: (docs/gone.md): no such file",
        "docs/a.md: (#nothing): no heading with the anchor #nothing",
    ]


def test_a_citation_of_a_missing_page_or_section_is_found(tmp_path: Path) -> None:
    _plant(
        tmp_path,
        {
            "docs/db.md": "# DB\n\n## Tables (3)\n\n## Several masters\n",
            "src/m.py": '"""See docs/db.md, "Tables", docs/db.md, "Several\n    masters" and\n'
            'docs/db.md, "Claims", docs/none.md."""\n',
        },
    )
    assert broken_citations(tmp_path) == [
        "src/m.py: 'docs/db.md, \"Claims\"': db.md has no heading starting 'Claims'",
        "src/m.py: 'docs/none.md': no such page",
    ]


def test_slugs_follow_github() -> None:
    assert slug("Masters: start, heartbeat, expiry") == "masters-start-heartbeat-expiry"
    assert slug("Tables (42)") == "tables-42"
    assert slug("WebSocket: /ws") == "websocket-ws"
    assert anchors("# A\n## A\n") == {"a", "a-1"}
