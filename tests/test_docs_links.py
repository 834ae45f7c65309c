"""Every relative link of README.md and docs/*.md names a file that exists, and an anchor
that one of its headings makes; every pointer to the docs in the code's comments, docstrings
and messages and in params.yaml and dvc.yaml ("README, Section", docs/x.md, "Section",
docs/x.md) names a file that exists and a heading it has."""

from __future__ import annotations

import re
import tokenize
from pathlib import Path

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text without fenced code blocks and inline code, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S).splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if not match:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(page: Path) -> list[str]:
    return [target for target in LINK.findall(prose(page.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http:, mailto: and the like


def test_the_slug_rule_on_known_headings():
    assert slug("What we tried: samples per CPU-minute") == "what-we-tried-samples-per-cpu-minute"
    assert slug("On a GPU (NVIDIA H200)") == "on-a-gpu-nvidia-h200"
    assert slug("Where the train step's time goes") == "where-the-train-steps-time-goes"


def test_links_are_found_outside_code_only():
    text = "see [a](a.md) and `[b](b.md)`\n```\n[c](c.md)\n```\n![d](d.png)"
    assert LINK.findall(prose(text)) == ["a.md", "d.png"]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path):
    broken = []
    for target in links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file.relative_to(ROOT)}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading makes #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}:\n" + "\n".join(broken)


# --- pointers in code and config: "README, Section", docs/x.md, "Section", docs/x.md ------

# Files whose comments, docstrings and messages point readers to the docs.
POINTING = sorted({*ROOT.glob("gan/**/*.py"), *ROOT.glob("stages/*.py"),
                   *ROOT.glob("benchmarks/*.py"), *ROOT.glob("tests/*.py"),
                   *ROOT.glob("docs/*.py"), ROOT / "params.yaml", ROOT / "dvc.yaml"}
                  - {ROOT / "tests" / "test_docs_links.py"})  # this file's examples
PAGE = r"(README(?:\.md)?|docs/[\w-]+\.md)"
# A section, quoted after its page (docs/resume.md, "Portable numerics"), or bare inside
# parentheses ((README, Where to read on)); a page alone (docs/faults.md).
QUOTED = re.compile(PAGE + r'[,:]? +"([^"]+)"')
BARE = re.compile(r"\(" + PAGE + r", ([^()\"]+?)\)")
FILE = re.compile(r"(?<![\w/.-])(docs/[\w-]+\.(?:md|png|gif|py))")
STRING_ENDS = re.compile(r"""^[rbfuRBFU]*("{3}|'{3}|"|')|("{3}|'{3}|"|')$""")


def commentary(path: Path) -> str:
    """What a file says to its reader, on one line: a Python file's comments and strings
    (docstrings, messages), or a YAML file's whole text, with comment marks dropped."""
    if path.suffix != ".py":
        text = re.sub(r"(?m)^\s*#", " ", path.read_text())
        return re.sub(r"\s+", " ", text.replace("#", " "))
    pieces = []
    with path.open() as handle:
        for token in tokenize.generate_tokens(handle.readline):
            if token.type == tokenize.COMMENT:
                pieces.append(token.string.lstrip("#"))
            elif token.type == tokenize.STRING:
                pieces.append(STRING_ENDS.sub("", token.string))
    return re.sub(r"\s+", " ", " ".join(pieces).replace('\\"', '"'))


def pointers(text: str) -> list[tuple[str, str | None]]:
    """(page, section or None) of every pointer to the docs in ``text``."""
    found = [(m.group(1), m.group(2)) for m in QUOTED.finditer(text)]
    found += [(m.group(1), m.group(2)) for m in BARE.finditer(text)]
    found += [(m.group(1), None) for m in FILE.finditer(text)]
    return found


def headings(page: Path) -> list[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return [m.group(1).strip() for m in re.finditer(r"(?m)^#{1,6}\s+(.*)$", text)]


def broken_pointer(page: str, section: str | None) -> str | None:
    """Why a pointer does not resolve, or None: its page must exist and, when it names a
    section, a heading must be that section (or start with it and a colon)."""
    file = ROOT / ("README.md" if page.startswith("README") else page)
    if not file.exists():
        return f"{page}: no such file"
    if section is None:
        return None
    want = slug(section)
    for heading in headings(file):
        if slug(heading) == want or heading.lower().startswith(section.lower() + ":"):
            return None
    return f"{page}, {section!r}: no such heading"


def test_pointers_are_read_from_comments_strings_and_yaml(tmp_path):
    code = tmp_path / "x.py"
    code.write_text('"""See (README, Code map)."""\n'
                    "x = 1  # as docs/resume.md,\n"
                    '# "Portable numerics" says\n'
                    'y = f"(docs/faults.md, \\"Writes\\")"\n')
    assert pointers(commentary(code)) == [
        ("docs/resume.md", "Portable numerics"), ("docs/faults.md", "Writes"),
        ("README", "Code map"), ("docs/resume.md", None), ("docs/faults.md", None)]
    params = tmp_path / "p.yaml"
    params.write_text('a: 1  # docs/params_graph.md, "What re-runs\n#   when you change a key"\n')
    assert pointers(commentary(params)) == [
        ("docs/params_graph.md", "What re-runs when you change a key"),
        ("docs/params_graph.md", None)]


@pytest.mark.parametrize("page,section,ok", [
    ("README", "Code map", True),
    ("README", "Speed and scale", False),  # a section README no longer has
    ("docs/results.md", "What we tried", True),  # "What we tried: samples per CPU-minute"
    ("docs/resume.md", "Portable numerics", True),
    ("docs/nowhere.md", None, False),
])
def test_a_pointer_resolves_only_to_a_heading_that_exists(page, section, ok):
    assert (broken_pointer(page, section) is None) is ok


@pytest.mark.parametrize("path", POINTING, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_pointer_in_code_and_config_resolves(path: Path):
    broken = [why for page, section in pointers(commentary(path))
              if (why := broken_pointer(page, section)) is not None]
    assert not broken, f"{path.relative_to(ROOT)}:\n" + "\n".join(broken)


def test_a_planted_stale_pointer_is_reported(tmp_path):
    code = tmp_path / "x.py"
    code.write_text('def f():\n    """Fast on the CPU (README, Speed and scale)."""\n'
                    "    # docs/performance.md, \"The test suite\" and docs/gone.md\n")
    broken = [why for page, section in pointers(commentary(code))
              if (why := broken_pointer(page, section)) is not None]
    assert broken == ["README, 'Speed and scale': no such heading",
                      "docs/gone.md: no such file"]
