"""The README's Layout names every module of the package where it lives, and no module that is gone."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULE = re.compile(r"\b(?!NNNN)\w+\.(?:py|sql)\b")  # NNNN_name.sql: the migrations, as a pattern


def _layout() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```", 2)[1].splitlines()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _named_under(lines: list[str], header: str) -> set[str]:
    """The file names the README mentions from `header`'s line to the next line indented no deeper."""
    start = next(i for i, line in enumerate(lines) if line.split(maxsplit=1)[:1] == [header])
    depth = _indent(lines[start])
    names = set(MODULE.findall(lines[start].split(maxsplit=1)[1] if len(lines[start].split()) > 1 else ""))
    for line in lines[start + 1:]:
        if line.strip() and _indent(line) <= depth:
            break
        names.update(MODULE.findall(line))
    return names


def _folders() -> list[Path]:
    package = ROOT / "payverify"
    return [package, *sorted(p for p in package.rglob("*") if p.is_dir() and (p / "__init__.py").exists())]


def test_every_module_is_named_in_its_folder():
    lines = _layout()
    missing = []
    for folder in _folders():
        named = _named_under(lines, folder.name + "/")
        for path in sorted(folder.glob("*.py")) + sorted(folder.glob("*.sql")):
            if path.name != "__init__.py" and path.name not in named:
                missing.append(str(path.relative_to(ROOT)))
    assert missing == [], f"the README's Layout does not name: {missing}"


def test_the_layout_names_no_module_that_is_gone():
    lines = _layout()
    gone = []
    for folder in _folders():
        nested = {p.name for p in folder.rglob("*.py")} | {p.name for p in folder.rglob("*.sql")}
        gone += [f"{folder.name}/{name}" for name in sorted(_named_under(lines, folder.name + "/") - nested)]
    assert gone == [], f"the README's Layout names modules that do not exist: {gone}"
