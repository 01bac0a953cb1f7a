"""The documentation holds together: every relative link and anchor in README.md,
CONTRIBUTING.md, docs/*.md and the roles' READMEs points at a file and heading that exist,
and README.md stays a short page for users."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 250

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target "title") and ![alt](target); the target ends at whitespace or ')'.
INLINE_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"", re.IGNORECASE)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    files += sorted((ROOT / "docs").glob("*.md"))
    files += sorted((ROOT / "roles").glob("*/README.md"))
    return [f for f in files if f.is_file()]


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link markup reduced to its text, lower case,
    punctuation other than '-' and '_' dropped, spaces turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    text = re.sub(r"<[^>]+>", "", text).lower()
    kept = [ch for ch in text
            if ch in " -_" or ch.isalnum() or unicodedata.category(ch).startswith("M")]
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a link into ``path`` may use (duplicates get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in prose_lines(path.read_text()):
        found.update(HTML_ANCHOR.findall(line))
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        found.add(base if n == 0 else f"{base}-{n}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link in the prose of ``path``, code excluded."""
    text = path.read_text()
    out = []
    for number, raw in prose_lines(text):
        line = INLINE_CODE.sub("", raw)
        out += [(number, t) for t in INLINE_LINK.findall(line)]
        ref = REF_DEF.match(line)
        if ref:
            out.append((number, ref.group(1)))
    return out


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for number, target in links(path):
        if EXTERNAL.match(target):
            continue
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        where = f"{path.relative_to(root)}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where}: no such file {dest}")
            continue
        if fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            problems.append(f"{where}: no heading with anchor #{fragment} in "
                            f"{dest.relative_to(root)}")
    return problems


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path: Path) -> None:
    assert not broken_links(path), "\n".join(broken_links(path))


def test_the_checker_finds_links_and_catches_broken_ones(tmp_path: Path) -> None:
    """The checker itself: a good link, a missing file, a missing anchor, a link in code
    (ignored) and an external link (ignored)."""
    (tmp_path / "other.md").write_text("# Other page\n\n## Timeline (`--timeline`, JSON lines)\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n"
        "[ok](other.md#timeline---timeline-json-lines) and [self](#page)\n"
        "[gone](missing.md) and [bad anchor](other.md#nope)\n"
        "`[in code](missing.md)` and [web](https://example.org/x)\n"
        "```\n[fenced](missing.md)\n```\n"
        "[ref]: other.md#other-page\n")
    found = [t for _, t in links(page)]
    assert found == ["other.md#timeline---timeline-json-lines", "#page", "missing.md",
                     "other.md#nope", "https://example.org/x", "other.md#other-page"]
    problems = broken_links(page, root=tmp_path)
    assert len(problems) == 2, problems
    assert "missing.md" in problems[0] and "#nope" in problems[1]


def test_slugs_follow_github() -> None:
    assert slug("Timeline (`--timeline`, JSON lines)") == "timeline---timeline-json-lines"
    assert slug("4. One thread for the embedded LLM") == "4-one-thread-for-the-embedded-llm"
    assert slug("Shared test fixtures (`tests/conftest.py`)") == \
        "shared-test-fixtures-testsconftestpy"
    assert slug("Role `nomad_version` & [link](x.md)") == "role-nomad_version--link"


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().count("\n")
    assert lines < README_MAX_LINES, (
        f"README.md has {lines} lines; keep it under {README_MAX_LINES} and move details "
        "into docs/")


PY_MODULE = re.compile(r"python3? -m ([A-Za-z_][\w.]*)")
NOT_OURS = {"pytest", "pip", "venv", "nltk.downloader", "ansible", "http.server"}


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_python_m_command_names_a_module_of_ours(path: Path) -> None:
    """`python -m X` in the documentation runs a module that exists in this checkout."""
    missing = []
    for module in sorted(set(PY_MODULE.findall(path.read_text(encoding="utf-8")))):
        if module in NOT_OURS:
            continue
        parts = module.split(".")
        base = ROOT.joinpath(*parts)
        if not (base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()):
            missing.append(module)
    assert not missing, f"{path.relative_to(ROOT)}: no module {missing} in the checkout"
