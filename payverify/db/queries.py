"""Named SQL loaded once from the package's .sql files: each query under a `-- name: NAME` header.

queries.sql holds what the modes run; catalog.sql what doctor and `db grants` read of pg_catalog.
A `-- fragment: NAME` section is no query: its text replaces `{NAME}` in the file's queries, so a
condition several queries share is written once.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_HEADER = re.compile(r"^-- (name|fragment): (\w+)\s*$", re.MULTILINE)
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _sql(body: str) -> str:
    return "\n".join(line for line in body.strip().splitlines() if not line.lstrip().startswith("--")).strip()


def parse_queries(text: str) -> dict[str, str]:
    parts = _HEADER.split(text)
    # parts = [preamble, section1, name1, body1, section2, ...]; a section is "name" (a query) or "fragment"
    queries: dict[str, str] = {}
    fragments: dict[str, str] = {}
    for section, name, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):  # always triples
        found = fragments if section == "fragment" else queries
        if name in found:
            raise ValueError(f"{section} {name} is defined twice")
        found[name] = _sql(body)

    def expand(match: re.Match[str]) -> str:
        if match[1] not in fragments:
            raise ValueError(f"no fragment {match[1]}")
        return _PLACEHOLDER.sub(expand, fragments[match[1]])

    return {name: _PLACEHOLDER.sub(expand, sql) for name, sql in queries.items()}


def load(package: str, filename: str) -> dict[str, str]:
    return parse_queries(resources.files(package).joinpath(filename).read_text(encoding="utf-8"))


@cache
def queries() -> dict[str, str]:
    return load("payverify.db", "queries.sql")


@cache
def catalog() -> dict[str, str]:
    return load("payverify.db", "catalog.sql")
