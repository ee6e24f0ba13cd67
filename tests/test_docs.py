"""The docs stay true to the tree: the layout block of docs/development.md names what exists and everything that
exists; every relative link of the README and docs/ leads to a file of the repository."""
from __future__ import annotations

import re

from helpers import REPO_ROOT

DEVELOPMENT = REPO_ROOT / "docs" / "development.md"
DESCRIBED = ("gpen_core", "nodes")
"""The packages whose every module the layout must name."""


def layout_entries(text: str) -> dict[str, str]:
    """``path -> description`` of the code block under ``## Layout`` (continuation lines joined; an entry indented
    under a folder is inside it)."""
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    entries: dict[str, str] = {}
    parents: list[tuple[int, str]] = []
    last = None
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        token, _, description = line.strip().partition(" ")
        looks_like_path = token.endswith("/") or re.fullmatch(r"[\w.-]+\.\w+", token) is not None
        if last is not None and (not looks_like_path or indent > 2 + max((i for i, _ in parents), default=0) + 2):
            entries[last] += " " + line.strip()  # a continuation of the previous description
            continue
        while parents and parents[-1][0] >= indent:
            parents.pop()
        path = (parents[-1][1] if parents else "") + token
        entries[path] = description.strip()
        last = path
        if token.endswith("/"):
            parents.append((indent, path))
    return entries


def test_the_layout_names_what_exists_and_everything_that_exists():
    entries = layout_entries(DEVELOPMENT.read_text(encoding="utf-8"))
    missing = [path for path in entries if not (REPO_ROOT / path).exists()]
    assert not missing, f"the layout names paths that do not exist: {missing}"
    unnamed = []
    for package in DESCRIBED:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            relative = path.relative_to(REPO_ROOT)
            if path.name in ("__init__.py", "__main__.py"):
                continue
            if str(relative) in entries:
                continue
            folder = str(relative.parent) + "/"
            # a module of a described folder is named in the description of the nearest folder entry above it
            while folder not in entries and "/" in folder.rstrip("/"):
                folder = folder.rstrip("/").rpartition("/")[0] + "/"
            words = set(re.findall(r"[\w.]+/?", entries.get(folder, "")))
            named = {path.stem, path.name, f"{path.parent.name}/"}
            if not named & words:
                unnamed.append(str(relative))
    assert not unnamed, f"modules the layout of docs/development.md does not name: {unnamed}"


def test_the_checker_reads_nesting_and_continuations():
    text = ("## Layout\n\n```\ngpen_core/           the core\n  gone.py             removed\n  face/    steps: masks,\n"
            "                      align\n```\n")
    entries = layout_entries(text)
    assert entries == {"gpen_core/": "the core", "gpen_core/gone.py": "removed",
                       "gpen_core/face/": "steps: masks, align"}


LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def test_every_relative_link_of_the_docs_leads_to_a_file():
    broken = []
    for page in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
                continue
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO_ROOT)} -> {target}")
    assert not broken, f"links to nothing: {broken}"
